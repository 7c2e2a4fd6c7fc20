// Vite builds index.html, web/ and the wasm package (web/pkg, made by `cargo xtask web`) into dist/.
import { defineConfig } from 'vite';

/**
 * The page's Content-Security-Policy: scripts and workers from the page's origin only, no eval
 * (WebAssembly compilation is allowed, nothing else), no inline script or style, no plugins.
 * Requests go to the origin, or to an https URL the user types into "Load URL" (CSP cannot name
 * that URL in advance; the page fetches nothing else on its own, which the tests check).
 */
export const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self' https:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

export default defineConfig({
  build: { outDir: 'dist', target: 'es2022', chunkSizeWarningLimit: 4096 },
  worker: { format: 'es' },
  // The header covers the page and its worker; the meta tag keeps the policy where dist/ is
  // served by something else.
  preview: { host: '127.0.0.1', port: 8080, strictPort: true, headers: { 'Content-Security-Policy': CSP } },
  plugins: [{
    name: 'kiln-csp',
    apply: 'build',
    transformIndexHtml: () => [{ tag: 'meta', attrs: { 'http-equiv': 'Content-Security-Policy', content: CSP }, injectTo: 'head-prepend' }],
  }],
});
