// Vite builds index.html, web/ and the wasm package (web/pkg, made by `cargo xtask web`) into dist/,
// with a service worker (Workbox, through vite-plugin-pwa) that makes the page work offline, and
// Brotli and gzip copies of every file beside it, which `vite preview` serves (through sirv).
import { constants } from 'node:zlib';
import sirv from 'sirv';
import { defineConfig } from 'vite';
import { compression, defineAlgorithm } from 'vite-plugin-compression2';
import { VitePWA } from 'vite-plugin-pwa';

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
    // dist/'s files, precompressed: Brotli to a browser that accepts it (over HTTPS), else gzip,
    // else as they are. The wasm module is 11.5 MB raw, about 2.2 MB as Brotli.
    name: 'kiln-precompressed',
    configurePreviewServer(server) {
      server.middlewares.use(sirv('dist', {
        brotli: true,
        gzip: true,
        etag: true,
        setHeaders: (res) => res.setHeader('Content-Security-Policy', CSP),
      }));
    },
  }, {
    name: 'kiln-csp',
    apply: 'build',
    transformIndexHtml: () => [{ tag: 'meta', attrs: { 'http-equiv': 'Content-Security-Policy', content: CSP }, injectTo: 'head-prepend' }],
  }, VitePWA({
    // A new build waits until the page says so (main.js offers a reload): taking over a page
    // mid-training would swap the code under a run.
    registerType: 'prompt',
    injectRegister: false,
    manifest: {
      name: 'Kiln: train a small GPT in your browser',
      short_name: 'Kiln',
      description: 'Pretrain and finetune small language models on your own GPU, offline.',
      start_url: '.',
      display: 'standalone',
      background_color: '#faf7f2',
      theme_color: '#3b2417',
      icons: [{ src: 'kiln.svg', sizes: 'any', type: 'image/svg+xml', purpose: 'any' }],
    },
    workbox: {
      // Everything the page needs, the wasm module (~12 MB) and the bundled corpora included.
      // Files carry content hashes in their names, and each build's precache list replaces the
      // last one whole: a page never mixes one build's JS with another's wasm.
      globPatterns: ['**/*.{html,js,css,wasm,txt,svg,webmanifest}'],
      maximumFileSizeToCacheInBytes: 64 * 1024 * 1024,
      cleanupOutdatedCaches: true,
      clientsClaim: true,
    },
  }), compression({
    include: /\.(html|js|css|wasm|txt|svg|webmanifest)$/,
    threshold: 1024,
    // Brotli's best (quality 11, a 16 MB window): ~40 s on one core for the wasm, once per build.
    algorithms: ['gzip', defineAlgorithm('brotliCompress', {
      params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_LGWIN]: 24 },
    })],
    logLevel: 'warn',
  })],
});
