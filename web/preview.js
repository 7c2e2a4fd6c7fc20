// The built page (dist/) served by `vite preview` for the benchmarks in Chromium (web/bench.js,
// bench/peers/browser.js): started in its own process group, so stopping it stops vite too.
import { spawn } from 'node:child_process';
import process from 'node:process';

const ROOT = new URL('../', import.meta.url).pathname;

/** Resolves once `url` answers 200; rejects after ~10 s. */
export async function waitForServer(url) {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer`);
}

/** Starts `vite preview` on `port`; returns the function that stops it. */
export function startPreview(port) {
  const server = spawn('npx', ['--no-install', 'vite', 'preview', '--port', String(port), '--strictPort'], {
    cwd: ROOT,
    stdio: 'ignore',
    detached: true,
  });
  return () => process.kill(-server.pid);
}
