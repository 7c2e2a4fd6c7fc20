// The browser half of the peer benchmark: in one headless Chromium, training steps of the same GPT
// (char vocabulary of web/data/shakespeare.txt, 2 layers × 128 wide, 4 heads, context 64, batch
// 16, AdamW, clipping at 1.0) in Kiln's page and in TF.js (tfjs-gpt.js on wasm, WebGL, WebGPU),
// interleaved in rounds. Writes bench/peers-browser.json and prints a markdown table.
//   node bench/peers/browser.js [--rounds 2] [--steps N] [--only kiln-cpu,tfjs-wasm]
// Kiln's page is served from dist/ (built by `cargo xtask web`) by `vite preview`.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { chromium } from '@playwright/test';
import sirv from 'sirv';
import { chromiumArgs } from '../../playwright.config.js';
import { startPreview, waitForServer } from '../../web/preview.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const KILN_PORT = 8183;
const TFJS_PORT = 8184;
const CONTESTANT_TIMEOUT_MS = 10 * 60_000;

const corpus = readFileSync(`${ROOT}web/data/shakespeare.txt`, 'utf8');
const CONFIG = { vocab: new Set(corpus).size, n_embd: 128, n_layer: 2, n_head: 4, block_size: 64, batch: 16 };
const TRAIN = { batch_size: CONFIG.batch, lr: 1e-3, beta1: 0.9, beta2: 0.99, weight_decay: 0.1, grad_clip: 1.0 };

/** Who runs, in order. A GPU contestant runs fewer steps: SwiftShader takes seconds per step. */
const CONTESTANTS = [
  { name: 'kiln-cpu', kiln: 'backend=cpu' },
  { name: 'kiln-webgpu-kernels', kiln: 'backend=wgpu&kernels=true', gpu: true },
  { name: 'kiln-webgpu-nokernels', kiln: 'backend=wgpu&kernels=false', gpu: true },
  { name: 'tfjs-wasm', tfjs: 'wasm' },
  { name: 'tfjs-webgl', tfjs: 'webgl', gpu: true },
  { name: 'tfjs-webgpu', tfjs: 'webgpu', gpu: true },
];
const KILN = CONTESTANTS.filter((c) => c.kiln).map((c) => c.name);
const TFJS = CONTESTANTS.filter((c) => c.tfjs).map((c) => c.name);
/** The comparisons: each side's fastest contestant (by median ms/step). */
const RATIOS = [
  { kiln: ['kiln-cpu'], tfjs: ['tfjs-wasm'] },
  { kiln: ['kiln-cpu'], tfjs: TFJS },
  { kiln: ['kiln-webgpu-kernels'], tfjs: ['tfjs-webgpu'] },
  { kiln: KILN, tfjs: TFJS },
];

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '2' }, steps: { type: 'string' }, only: { type: 'string' } },
});
const ROUNDS = Number(args.rounds);
const only = args.only?.split(',') ?? CONTESTANTS.map((c) => c.name);
const unknown = only.filter((name) => !CONTESTANTS.some((c) => c.name === name));
if (unknown.length || !(ROUNDS >= 1) || (args.steps && !(Number(args.steps) >= 1))) {
  console.error(`usage: node bench/peers/browser.js [--rounds N] [--steps N] [--only ${CONTESTANTS.map((c) => c.name).join(',')}]`);
  process.exit(2);
}
const selected = CONTESTANTS.filter((c) => only.includes(c.name));
const stepsOf = (c) => ({ warmup: c.gpu ? 2 : 3, steps: Number(args.steps ?? (c.gpu ? 6 : 8)) });

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/** GPT parameters with bias=False and a tied head. */
function paramCount({ vocab, n_embd: C, n_layer: L, block_size: T }) {
  return vocab * C + T * C + L * (2 * C + 12 * C * C) + C;
}

/** TF.js's page, its UMD builds and the corpus. */
function tfjsServer() {
  const dir = (path) => sirv(`${ROOT}${path}`, { dev: true });
  const mounts = [
    ['/tfjs/', dir('node_modules/@tensorflow/tfjs/dist')],
    ['/tfjs-backend-wasm/', dir('node_modules/@tensorflow/tfjs-backend-wasm/dist')],
    ['/tfjs-backend-webgpu/', dir('node_modules/@tensorflow/tfjs-backend-webgpu/dist')],
    ['/data/', dir('web/data')],
    ['/', dir('bench/peers')],
  ];
  const server = createServer((req, res) => {
    const [prefix, serve] = mounts.find(([p]) => req.url.startsWith(p));
    req.url = req.url.slice(prefix.length - 1);
    serve(req, res, () => {
      res.statusCode = 404;
      res.end();
    });
  });
  return new Promise((resolve) => server.listen(TFJS_PORT, '127.0.0.1', () => resolve(server)));
}

/** Rejects after `ms`, naming what took too long. */
function deadline(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms / 1000} s`)), ms);
  });
  return { promise, clear: () => clearTimeout(timer) };
}

/** Kiln's page with the benchmark's model; trains `warmup + steps` steps and reads its history. */
async function runKiln(page, contestant) {
  const { warmup, steps } = stepsOf(contestant);
  const maxSteps = warmup + steps;
  const { n_embd, n_layer, n_head, block_size, batch } = CONFIG;
  const query = `${contestant.kiln}&preset=tiny&n_embd=${n_embd}&n_layer=${n_layer}&n_head=${n_head}` +
    `&block_size=${block_size}&batch_size=${batch}&lr=${TRAIN.lr}&eval_interval=0&eval_steps=1&max_steps=${maxSteps}`;
  await page.goto(`http://127.0.0.1:${KILN_PORT}/?${query}`);
  // Ready, or a visible problem: a refused address setting, a start that failed.
  await page.waitForFunction(() => document.body.dataset.ready === 'true' ||
    !document.getElementById('error').hidden || !document.getElementById('address-problems').hidden,
  null, { timeout: 120_000 });
  const state = await page.evaluate(() => ({
    ready: document.body.dataset.ready === 'true',
    problems: [document.getElementById('address-problems'), document.getElementById('error')]
      .filter((e) => !e.hidden).map((e) => e.textContent.trim()),
    backend: window.kiln.backend,
    untrusted: window.kiln.untrusted ?? null,
    adapter: window.kiln.adapter?.name ?? null,
    preset: window.kiln.preset,
    vocab: document.getElementById('tok-stats').textContent,
    params: document.getElementById('params').textContent,
  }));
  if (state.problems.length) throw new Error(`Kiln's page: ${state.problems.join(' ')}`);
  if (!state.ready) throw new Error("Kiln's page did not get ready");
  const want = {
    backend: contestant.kiln.includes('wgpu') ? 'wgpu' : 'cpu',
    'model.n_embd': n_embd, 'model.n_layer': n_layer, 'model.n_head': n_head, 'model.block_size': block_size,
    'model.dropout': 0, 'model.bias': false, 'model.tie_weights': true,
    'train.batch_size': batch, 'train.max_steps': maxSteps, 'train.lr': TRAIN.lr, 'train.beta1': TRAIN.beta1,
    'train.beta2': TRAIN.beta2, 'train.weight_decay': TRAIN.weight_decay, 'train.grad_clip': TRAIN.grad_clip,
  };
  if (contestant.kiln.includes('kernels=')) want['model.kernels'] = contestant.kiln.includes('kernels=true');
  const got = (key) => (key === 'backend' ? state.backend : key.split('.').reduce((o, k) => o[k], state.preset));
  const wrong = Object.entries(want).filter(([key, value]) => got(key) !== value)
    .map(([key, value]) => `${key} is ${got(key)}, not ${value}`);
  if (state.vocab !== `${CONFIG.vocab} tokens`) wrong.push(`the vocabulary is "${state.vocab}", not ${CONFIG.vocab} tokens`);
  const params = `${(paramCount(CONFIG) / 1e6).toFixed(3)}M parameters`;
  if (!state.params.startsWith(params)) wrong.push(`the page says "${state.params}", not ${params}`);
  if (state.untrusted) wrong.push('the page found that WebGPU computes wrong');
  if (wrong.length) throw new Error(`Kiln's page did not take the benchmark's model: ${wrong.join('; ')}`);

  await page.click('#train');
  await page.waitForFunction(() => document.getElementById('eta').textContent === 'done' ||
    !document.getElementById('error').hidden, null, { timeout: CONTESTANT_TIMEOUT_MS });
  const run = await page.evaluate(() => ({
    error: document.getElementById('error').hidden ? null : document.getElementById('error-text').textContent,
    history: window.kiln.history,
  }));
  if (run.error) throw new Error(`Kiln's page: ${run.error}`);
  if (run.history.length !== maxSteps) throw new Error(`Kiln ran ${run.history.length} steps, not ${maxSteps}`);
  return {
    stepsMs: run.history.slice(warmup).map((p) => p.stepMs),
    losses: run.history.map((p) => p.loss),
    adapter: state.adapter,
  };
}

/** The same model in TF.js on `contestant.tfjs`. */
async function runTfjs(page, contestant) {
  const { warmup, steps } = stepsOf(contestant);
  await page.goto(`http://127.0.0.1:${TFJS_PORT}/tfjs.html`);
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  const r = await page.evaluate((payload) => window.runTfjs(payload),
    { backend: contestant.tfjs, steps, warmup, config: CONFIG, train: TRAIN });
  if (r.backend !== contestant.tfjs) throw new Error(`TF.js ran on ${r.backend}, not ${contestant.tfjs}`);
  if (r.params !== paramCount(CONFIG)) throw new Error(`TF.js's model has ${r.params} parameters, not ${paramCount(CONFIG)}`);
  if (r.tensors.at(-1) !== r.tensors[0]) throw new Error(`TF.js leaks tensors: ${r.tensors.join(' → ')}`);
  return { stepsMs: r.stepsMs, losses: r.losses, wasm: r.wasm };
}

/** One contestant once, on a fresh page: a round's entry, or the reason it failed. */
async function measure(browser, contestant, round) {
  const started = performance.now();
  const context = await browser.newContext({ serviceWorkers: 'block' });
  const page = await context.newPage();
  const limit = deadline(CONTESTANT_TIMEOUT_MS, contestant.name);
  const entry = { round, contestant: contestant.name };
  try {
    const r = await Promise.race([(contestant.kiln ? runKiln : runTfjs)(page, contestant), limit.promise]);
    Object.assign(entry, {
      ms_per_step: Math.round(median(r.stepsMs)),
      steps_ms: r.stepsMs.map(Math.round),
      first_loss: r.losses[0],
      final_loss: r.losses.at(-1),
    });
    if (r.adapter !== undefined) entry.adapter = r.adapter;
    if (r.wasm) entry.wasm = r.wasm;
  } catch (e) {
    entry.failed = e.message.split('\n')[0];
  } finally {
    limit.clear();
    await context.close();
  }
  entry.wall_s = Math.round((performance.now() - started) / 1000);
  console.error(`round ${round}, ${contestant.name}: ${entry.failed ? `FAILED: ${entry.failed}` : `${entry.ms_per_step} ms/step`} (${entry.wall_s} s)`);
  return entry;
}

/** Per contestant: the median over rounds of its round medians. */
function summarize(rounds) {
  return selected.map(({ name }) => {
    const perRound = rounds.filter((r) => r.contestant === name).map((r) => r.ms_per_step ?? null);
    const measured = perRound.filter((ms) => ms !== null);
    return { contestant: name, median_ms: measured.length ? median(measured) : null, per_round: perRound };
  });
}

/** TF.js ms/step ÷ Kiln ms/step, only where both sides were measured in every round. */
function compare(summary) {
  const ratios = [];
  const refused = [];
  const complete = (name) => summary.find((s) => s.contestant === name)?.per_round.every((ms) => ms !== null);
  const fastest = (names) => names.map((n) => summary.find((s) => s.contestant === n))
    .reduce((a, b) => (b.median_ms < a.median_ms ? b : a));
  for (const { kiln, tfjs } of RATIOS) {
    const label = (names) => (names.length > 1 ? `${names[0].split('-')[0]}-best` : names[0]);
    const missing = [...kiln, ...tfjs].filter((name) => !complete(name));
    if (missing.length) {
      refused.push({ kiln: label(kiln), tfjs: label(tfjs), reason: `not measured in every round: ${missing.join(', ')}` });
      continue;
    }
    const k = fastest(kiln);
    const t = fastest(tfjs);
    ratios.push({
      kiln: k.contestant, tfjs: t.contestant, kiln_ms: k.median_ms, tfjs_ms: t.median_ms,
      compared: `${label(kiln)} vs ${label(tfjs)}`, ratio: Number((t.median_ms / k.median_ms).toFixed(2)),
    });
  }
  return { ratios, refused };
}

function printTables(result) {
  const { rounds, summary, ratios, ratios_refused: refused } = result;
  const roundNumbers = [...new Set(rounds.map((r) => r.round))];
  console.log(`\nChromium ${result.chromium_version}, WebGPU adapter: ${result.adapter ?? 'none'}; ` +
    `vocab ${result.config.vocab}, ${result.config.n_layer} layers × ${result.config.n_embd}, ` +
    `${result.config.n_head} heads, context ${result.config.block_size}, batch ${result.config.batch}\n`);
  console.log(`| contestant | ${roundNumbers.map((n) => `round ${n} ms/step`).join(' | ')} | median ms/step | loss first → last |`);
  console.log(`|---|${roundNumbers.map(() => '---|').join('')}---|---|`);
  for (const s of summary) {
    const mine = rounds.filter((r) => r.contestant === s.contestant);
    const cells = mine.map((r) => (r.failed ? `failed: ${r.failed}` : String(r.ms_per_step)));
    const last = mine.findLast((r) => !r.failed);
    const loss = last ? `${last.first_loss.toFixed(2)} → ${last.final_loss.toFixed(2)}` : '';
    console.log(`| ${s.contestant} | ${cells.join(' | ')} | ${s.median_ms ?? 'n/a'} | ${loss} |`);
  }
  if (ratios.length) {
    console.log('\n| comparison | Kiln | TF.js | TF.js ms ÷ Kiln ms |\n|---|---|---|---|');
    for (const r of ratios) console.log(`| ${r.compared} | ${r.kiln} ${r.kiln_ms} ms | ${r.tfjs} ${r.tfjs_ms} ms | ${r.ratio}× |`);
  }
  for (const r of refused) console.log(`\nNo ratio for ${r.kiln} vs ${r.tfjs}: ${r.reason}.`);
}

const stopKiln = startPreview(KILN_PORT);
const server = await tfjsServer();
try {
  await waitForServer(`http://127.0.0.1:${KILN_PORT}/`);
  await waitForServer(`http://127.0.0.1:${TFJS_PORT}/tfjs.html`);
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [...chromiumArgs, '--enable-unsafe-webgpu'],
  });
  const rounds = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const contestant of selected) rounds.push(await measure(browser, contestant, round));
  }
  const summary = summarize(rounds);
  const { ratios, refused } = compare(summary);
  const result = {
    date: new Date().toISOString(),
    // `cargo xtask bench peers` stamps every file of one invocation with its id.
    run_id: process.env.KILN_PEERS_RUN ?? null,
    chromium_version: browser.version(),
    adapter: rounds.find((r) => r.adapter)?.adapter ?? null,
    config: CONFIG,
    rounds,
    summary,
    ratio_is: 'TF.js median ms/step ÷ Kiln median ms/step (above 1: Kiln is faster)',
    ratios,
    ratios_refused: refused,
  };
  await browser.close();
  writeFileSync(`${ROOT}bench/peers-browser.json`, `${JSON.stringify(result, null, 2)}\n`);
  printTables(result);
} finally {
  server.close();
  stopKiln();
}
