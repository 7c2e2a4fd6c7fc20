// The page in a second browser: Debian's Firefox ESR, driven by puppeteer-core over WebDriver
// BiDi (Playwright cannot drive a stock Firefox). Its WebGPU is wgpu on lavapipe, so the page's
// WGSL goes through a second compiler (naga, not Chromium's Tint), and it has shader-f16, so
// mixed precision runs in a browser. Run by `cargo xtask test` with `node --test`, after the
// Chromium suite, against the same built dist/.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import puppeteer from 'puppeteer-core';
import { preview } from 'vite';

const PORT = 8182;
const STEPS = 6;
/** The tiny preset, a short run without evaluations (each costs seconds on an emulated GPU). */
const RUN = `max_steps=${STEPS}&eval_interval=0&eval_steps=2`;

let server;
before(async () => {
  server = await preview({ preview: { port: PORT, strictPort: true }, logLevel: 'warn' });
});
after(() => new Promise((done) => server.httpServer.close(done)));

/** Firefox with a fresh profile; WebGPU on unless `prefs` say otherwise. */
function firefox(prefs = {}) {
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: mkdtempSync(join(tmpdir(), 'kiln-firefox-')),
    extraPrefsFirefox: { 'dom.webgpu.enabled': true, 'gfx.webgpu.ignore-blocklist': true, ...prefs },
  });
}

/** Opens the page at `query` and waits until it is ready; `errors` collects what went wrong. */
async function open(browser, query) {
  const page = await browser.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && /panicked|RuntimeError|unreachable/.test(m.text())) page.errors.push(m.text());
  });
  await page.goto(`http://127.0.0.1:${PORT}/${query}`);
  await ready(page);
  return page;
}

const ready = (page) => page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
const kiln = (page, expr) => page.evaluate(`window.kiln.${expr}`);
const text = (page, selector) => page.$eval(selector, (e) => e.textContent);
const until = (page, fn, arg) => page.waitForFunction(fn, { timeout: 300_000, polling: 200 }, arg);

/** Trains the run the address set up, to its end; returns its losses and step times. */
async function train(page) {
  await page.click('#train');
  await until(page, () => document.querySelector('#eta').textContent === 'done');
  await until(page, () => !document.querySelector('#train').disabled);
  const history = await kiln(page, 'history');
  return { losses: history.map((p) => p.loss), stepMs: history.map((p) => p.stepMs) };
}

async function generate(page, seed) {
  await page.$eval('#seed', (e, v) => { e.value = v; }, String(seed));
  await page.$eval('#max-tokens', (e) => { e.value = '30'; });
  await page.click('#generate');
  await until(page, () => window.kiln.generated != null);
  return kiln(page, 'generated');
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const relative = (a, b) => Math.abs(a - b) / Math.abs(b);

test('WebGPU in Firefox: kernels compiled by naga (every matmul and attention variant right) train like the CPU; f16 mixed precision tracks f32; generate, save, reload, load', async () => {
  const browser = await firefox();
  try {
    const cpu = await train(await open(browser, `?backend=cpu&${RUN}`));

    const page = await open(browser, `?backend=wgpu&${RUN}`);
    const adapter = await kiln(page, 'adapter');
    assert.equal(await kiln(page, 'backend'), 'wgpu');
    assert.equal(adapter.f16, true, `the adapter has shader-f16: ${JSON.stringify(adapter)}`);
    assert.match(await text(page, '#adapter'), /shader-f16/);
    // naga compiles every matmul variant and attention tile, each computes right, and the
    // fastest is used.
    const tuning = await kiln(page, 'kernels');
    assert.deepEqual(tuning.matmul.timings.map((t) => t.variant), ['burn', 'registers-32', 'staged-64']);
    assert.deepEqual(tuning.attention.timings.map((t) => t.variant), [64, 32, 16]);
    for (const kernel of [tuning.matmul, tuning.attention]) {
      kernel.timings.forEach((t) => assert.ok(t.error < 1e-5, JSON.stringify(t)));
      console.log(`Firefox at ${kernel.shape.join('×')}: ${kernel.timings.map((t) => `${t.variant} ${t.ms.toFixed(1)} ms`).join(', ')}`);
    }
    assert.match(await text(page, '#kernel-choice'), new RegExp(`^matmul: ${tuning.matmul.chosen} chosen`));
    // Firefox 153 offers no subgroups, so the norms keep their workgroup tree, untimed.
    assert.equal(await page.evaluate(async () => (await navigator.gpu.requestAdapter()).features.has('subgroups')), false);
    assert.equal(tuning.norm, null);
    const gpu = await train(page);
    assert.equal(await kiln(page, 'preset.model.kernels'), true);
    // The same seed and data: WebGPU's losses are the CPU's, to float rounding.
    gpu.losses.forEach((loss, i) => assert.ok(relative(loss, cpu.losses[i]) < 1e-3, `step ${i + 1}: ${loss} vs CPU ${cpu.losses[i]}`));
    assert.ok(gpu.losses.at(-1) < gpu.losses[0] - 0.1, `the loss falls: ${gpu.losses}`);

    // Generation is reproducible by seed, and survives save → reload → load.
    const sample = await generate(page, 5);
    assert.ok(sample.length > 0);
    assert.equal(await generate(page, 5), sample);
    await page.$eval('#ckpt-name', (e) => { e.value = 'firefox'; });
    await page.click('#save-browser');
    await until(page, () => document.querySelector('#ckpt-status').textContent.startsWith('Saved "firefox"'));
    await page.reload();
    await ready(page);
    // The list of saved checkpoints fills in after the page is ready (puppeteer's click does not
    // wait for its target, as Playwright's does).
    const load = await page.waitForSelector('#saved tr[data-name="firefox"] button.load', { timeout: 60_000 });
    await load.click();
    await until(page, (n) => document.querySelector('#ckpt-status').textContent === `Loaded "firefox" at step ${n}.`, STEPS);
    assert.deepEqual((await kiln(page, 'history')).map((p) => p.loss), gpu.losses);
    assert.equal(await generate(page, 5), sample);

    // Mixed precision: the matmuls in f16 (the page says so), losses near f32's but not equal.
    const half = await open(browser, `?backend=wgpu&${RUN}&mixed_precision=true`);
    const mixed = await train(half);
    assert.equal(await kiln(half, 'half'), true);
    assert.match(await text(half, '#precision'), /f16 matmuls/);
    mixed.losses.forEach((loss, i) => assert.ok(relative(loss, gpu.losses[i]) < 0.02, `step ${i + 1}: ${loss} vs f32 ${gpu.losses[i]}`));
    assert.ok(mixed.losses.some((loss, i) => loss !== gpu.losses[i]), 'f16 changed the numbers');

    for (const p of [page, half]) assert.deepEqual(p.errors, []);
    // Steady steps (the first compiles the kernels).
    console.log(`Firefox ${await browser.version()}, tiny, median ms/step: CPU ${median(cpu.stepMs.slice(1))}, ` +
      `WebGPU f32 ${median(gpu.stepMs.slice(1))}, WebGPU mixed precision ${median(mixed.stepMs.slice(1))}`);
  } finally {
    await browser.close();
  }
});

test('without WebGPU Firefox says so and trains on the CPU', async () => {
  const browser = await firefox({ 'dom.webgpu.enabled': false });
  try {
    const page = await open(browser, '?max_steps=3&eval_interval=0');
    assert.equal(await kiln(page, 'backend'), 'cpu');
    assert.match(await text(page, '#fallback-notice'), /CPU/);
    const { losses } = await train(page);
    assert.equal(losses.length, 3);
    assert.deepEqual(page.errors, []);
  } finally {
    await browser.close();
  }
});
