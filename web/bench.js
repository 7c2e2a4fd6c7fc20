// The page's benchmark (run by `cargo xtask bench` after it builds dist/): in Debian's Chromium,
// the time from navigation to "ready to train" and to the first finished training step, and the
// training speed of `tiny` on each backend. Prints a table and writes bench-web.json.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { chromium } from '@playwright/test';
import { chromiumArgs } from '../playwright.config.js';

const PORT = 8182;
const STEPS = 12;

const server = spawn('npx', ['--no-install', 'vite', 'preview', '--port', String(PORT), '--strictPort'], {
  stdio: 'ignore',
  detached: true,
});
const stopServer = () => process.kill(-server.pid);

async function waitForServer() {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${PORT}/`)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('vite preview did not start');
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Opens the page on `backend`, trains `tiny` for STEPS steps right when it is ready. */
async function measure(browser, backend) {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${PORT}/?backend=${backend}&preset=tiny`);
  await page.waitForSelector('body[data-ready=true]', { timeout: 120_000 });
  await page.fill('[data-key="train.max_steps"]', String(STEPS));
  await page.fill('[data-key="train.eval_interval"]', '0');
  await page.click('#train');
  await page.waitForFunction(() => document.getElementById('eta').textContent === 'done', null, { timeout: 600_000 });
  const r = await page.evaluate(() => ({
    ready: window.kiln.timings.ready,
    firstStep: window.kiln.timings.firstStep,
    adapter: window.kiln.adapter.name,
    history: window.kiln.history,
  }));
  await page.close();
  // Steady state: the first steps compile shaders.
  const steady = r.history.slice(2);
  return {
    backend: backend === 'wgpu' ? `WebGPU (${r.adapter})` : 'CPU (wasm)',
    ready_ms: Math.round(r.ready),
    first_step_ms: Math.round(r.firstStep),
    ms_per_step: Math.round(median(steady.map((p) => p.stepMs))),
    tokens_per_sec: Math.round(median(steady.map((p) => p.tokensPerSec))),
  };
}

try {
  await waitForServer();
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [...chromiumArgs, '--enable-unsafe-webgpu'],
  });
  const rows = [];
  for (const backend of ['wgpu', 'cpu']) rows.push(await measure(browser, backend));
  await browser.close();
  console.log('\n| page, tiny | load → ready | load → first step done | ms/step | tokens/s |\n|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.backend} | ${r.ready_ms} ms | ${r.first_step_ms} ms | ${r.ms_per_step} | ${r.tokens_per_sec} |`);
  }
  writeFileSync('bench-web.json', JSON.stringify(rows, null, 2));
} finally {
  stopServer();
}
