// Vite builds index.html, web/ and the wasm package (web/pkg, made by `cargo xtask web`) into dist/.
import { defineConfig } from 'vite';

export default defineConfig({
  build: { outDir: 'dist', target: 'es2022', chunkSizeWarningLimit: 4096 },
  worker: { format: 'es' },
  preview: { host: '127.0.0.1', port: 8080, strictPort: true },
});
