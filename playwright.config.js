// Browser tests: Debian's Chromium (never a downloaded browser) against the built page, served by
// `vite preview`. Run through `cargo xtask test`, which builds dist/ first.
import { defineConfig } from '@playwright/test';

const PORT = 8181;
/** Chromium flags for a sandboxed CI machine with no network and no GPU. */
export const chromiumArgs = [
  '--headless=new', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic',
];

export default defineConfig({
  testDir: 'tests',
  // Firefox has its own runner (node --test with puppeteer-core): tests/firefox/.
  testIgnore: 'firefox/**',
  // SwiftShader emulates the GPU on the CPU: one test per core, with room for slow steps.
  workers: 2,
  timeout: 8 * 60_000,
  expect: { timeout: 60_000 },
  outputDir: 'test-results',
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${PORT}/`,
    // The service worker's install stores the 12 MB wasm, which Chromium compiles again for its
    // code cache: seconds per page on two cores. Only offline.spec.js needs it.
    serviceWorkers: 'block',
    screenshot: 'only-on-failure',
    launchOptions: { executablePath: '/usr/bin/chromium', args: [...chromiumArgs, '--enable-unsafe-webgpu'] },
  },
  webServer: {
    command: `npx --no-install vite preview --port ${PORT} --strictPort`,
    url: `http://127.0.0.1:${PORT}/`,
    reuseExistingServer: false,
  },
});
