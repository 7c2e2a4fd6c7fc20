// The page's benchmark (run by `cargo xtask bench` after it builds dist/): in Debian's Chromium,
// the time from navigation to "ready to train" and to the first finished training step, and the
// training speed of each model family at one size (`tiny`, `tiny-bert`, `tiny-lstm`) on each
// backend. Prints a table and writes bench-web.json.
// `node web/bench.js kernels` (run by `cargo xtask bench kernels`) instead times the WGSL kernels
// against Burn's ops on WebGPU, plus the FMA peak and matmul, and writes bench-kernels-web.json.
import { writeFileSync } from 'node:fs';
import { chromium } from '@playwright/test';
import { chromiumArgs } from '../playwright.config.js';
import { startPreview, waitForServer } from './preview.js';

const PORT = 8182;
const STEPS = 12;

const stopServer = startPreview(PORT);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The families' presets of one size. */
const PRESETS = ['tiny', 'tiny-bert', 'tiny-lstm'];

/** Opens the page on `backend`, trains `preset` for STEPS steps right when it is ready. */
async function measure(browser, backend, preset) {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${PORT}/?backend=${backend}&preset=${preset}`);
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
    preset,
    backend: backend === 'wgpu' ? `WebGPU (${r.adapter})` : 'CPU (wasm)',
    ready_ms: Math.round(r.ready),
    first_step_ms: Math.round(r.firstStep),
    ms_per_step: Math.round(median(steady.map((p) => p.stepMs))),
    tokens_per_sec: Math.round(median(steady.map((p) => p.tokensPerSec))),
  };
}

/** The kernel tables on WebGPU, at the shapes of two presets with a small batch. */
async function kernels(browser) {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${PORT}/?backend=wgpu`);
  await page.waitForSelector('body[data-ready=true]', { timeout: 120_000 });
  const adapter = await page.evaluate(() => window.kiln.adapter.name);
  const rows = [];
  const steps = [];
  let result;
  // A shakespeare-char step takes minutes on SwiftShader: steps are timed for the baby only.
  for (const [name, stepReps] of [['shakespeare-baby', 3], ['shakespeare-char', 0]]) {
    result = await page.evaluate(
      (payload) => window.kiln.benchKernels(payload),
      { name, vocab: 76, batch: 2, reps: 3, matmul: [256, 512, 1024], stepReps },
    );
    rows.push(...result.kernels);
    if (result.step_ms) steps.push({ preset: name, batch: 2, ...result.step_ms });
  }
  await page.close();
  console.log('\n| training step on WebGPU | kernels off ms | kernels on ms | speedup |\n|---|---|---|---|');
  for (const s of steps) {
    console.log(`| ${s.preset}, batch ${s.batch} | ${s.kernels_off.toFixed(0)} | ${s.kernels_on.toFixed(0)} | ${(s.kernels_off / s.kernels_on).toFixed(2)}× |`);
  }
  console.log(`\nadapter: ${adapter}\n\n| kernel (fwd+bwd) | shape | Burn ops ms | fused ms | speedup |\n|---|---|---|---|---|`);
  for (const r of rows) {
    console.log(`| ${r.op} | ${r.shape} | ${r.unfused_ms.toFixed(2)} | ${r.fused_ms.toFixed(2)} | ${r.speedup.toFixed(2)}× |`);
  }
  console.log(`\nFMA peak: ${result.peak_gflops.toFixed(1)} GFLOP/s\n\n| matmul n³ | variant | GFLOP/s | % of peak |\n|---|---|---|---|`);
  for (const r of result.matmul) {
    for (const v of r.variants) {
      console.log(`| ${r.n} | ${v.variant} | ${v.gflops.toFixed(1)} | ${v.percent_of_peak.toFixed(0)}% |`);
    }
  }
  writeFileSync('bench-kernels-web.json', JSON.stringify({ adapter, kernels: rows, steps, peak_gflops: result.peak_gflops, matmul: result.matmul }, null, 2));
}

try {
  await waitForServer(`http://127.0.0.1:${PORT}/`);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [...chromiumArgs, '--enable-unsafe-webgpu'],
  });
  if (process.argv[2] === 'kernels') {
    await kernels(browser);
  } else {
    const rows = [];
    for (const preset of PRESETS) {
      for (const backend of ['wgpu', 'cpu']) rows.push(await measure(browser, backend, preset));
    }
    console.log('\n| page | backend | load → ready | load → first step done | ms/step | tokens/s |\n|---|---|---|---|---|---|');
    for (const r of rows) {
      console.log(`| ${r.preset} | ${r.backend} | ${r.ready_ms} ms | ${r.first_step_ms} ms | ${r.ms_per_step} | ${r.tokens_per_sec} |`);
    }
    writeFileSync('bench-web.json', JSON.stringify(rows, null, 2));
  }
  await browser.close();
} finally {
  stopServer();
}
