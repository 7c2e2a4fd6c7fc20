// The page: it reads the controls, talks to the training worker through protocol.js, and draws
// what the worker reports. No model code runs here.
import defaultCorpusUrl from './data/shakespeare.txt?url';
import miltonUrl from './data/milton.txt?url';
import { lineChart, scatterChart } from './charts.js';
import { comparison, summarize, tokensPerStep } from './compare.js';
import { Event, Request, client } from './protocol.js';
import { address, fieldValue, readAddress } from './settings.js';
import { registerSW } from 'virtual:pwa-register';
import * as storage from './storage.js';

const $ = (id) => document.getElementById(id);
const PRESETS = ['tiny', 'shakespeare-baby', 'shakespeare-char', 'tiny-lstm', 'shakespeare-lstm', 'tiny-bert', 'shakespeare-bert', 'authorship-bert'];
/** The model and training fields: `data-key` names a key of the preset. */
const fields = [...document.querySelectorAll('[data-key]')];
/** The settings the page address gives (a shared link), checked. */
const shared = readAddress(location.search, fields, PRESETS);

const page = {
  preset: null, // the configuration in the fields ({model, train})
  configured: false, // the worker holds a model built from `page.preset.model`
  scheduled: false, // ... and trains it with `page.preset.train`
  adapter: null,
  history: [], // every progress event of the current run
  autosave: null, // null, 'writing', or 'again' (one more is due when the write ends)
  timings: { start: performance.now() }, // read by tests and the benchmark
};
window.kiln = page;

// ---- errors and status ----------------------------------------------------------------------

function showError(message) {
  $('error-text').textContent = message;
  $('error').hidden = false;
}
$('error-close').onclick = () => { $('error').hidden = true; };
const status = (text) => { $('status').textContent = text; };

/** Runs an action from a control; its failure becomes a visible message, never a silent one. */
function action(fn, where = showError) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (e) {
      where(e.message);
    }
  };
}

// ---- the worker -------------------------------------------------------------------------------

let worker = null;
let call = null; // call(type, payload): a request to the current worker (see protocol.js)
function startWorker() {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.onerror = (e) => {
    showError(`The training worker stopped (${e.message ?? 'unknown error'}). Reload the page to start again.`);
    status('Stopped');
  };
  call = client(worker, onEvent);
}

const charts = {
  loss: lineChart($('chart-loss'), 'loss', ['train', 'validation']),
  speed: lineChart($('chart-speed'), 'tokens/s', ['tokens/s']),
  lr: lineChart($('chart-lr'), 'learning rate', ['lr']),
};
page.charts = charts;
const compare = comparison($('chart-compare'), $('compare-runs'));
page.compare = compare;

function onEvent(msg) {
  switch (msg.type) {
    case Event.progress: return onProgress(msg);
    case Event.sample: $('sample').textContent = `step ${msg.step}:\n${msg.text}`; return;
    case Event.token:
      (page.tokenTarget ?? $('output')).textContent += msg.text;
      page.tokenEvents += 1;
      return;
    case Event.state: return onState(msg.state);
    case Event.error: showError(msg.message); return;
    case Event.panic: return restart(`Kiln hit an internal error (${msg.message})`);
    case Event.deviceLost: return restart(`The GPU device was lost (${msg.message})`);
    case Event.untrusted: distrust(msg.check, `at step ${msg.step}`).catch((e) => showError(e.message)); return;
  }
}

/** The kernel benchmark (driven by web/bench.js): see `Request.benchKernels`. */
page.benchKernels = (payload) => call(Request.benchKernels, payload);

/** Draws one step's progress (live, or replayed from a checkpoint's history). */
function plot(p) {
  p.tokens ??= p.step * tokensPerStep(page.preset); // histories saved before runs were compared
  page.history.push(p);
  charts.loss.push(p.step, [p.loss, p.valLoss]);
  charts.speed.push(p.step, [p.tokensPerSec]);
  charts.lr.push(p.step, [p.lr]);
  $('progress').max = p.maxSteps;
  $('progress').value = p.step;
  $('step').textContent = `step ${p.step} / ${p.maxSteps} · loss ${p.loss.toFixed(3)}` +
    (p.valLoss != null ? ` · val ${p.valLoss.toFixed(3)}` : '') +
    (p.maskedAccuracy != null ? ` · masked tokens right ${(100 * p.maskedAccuracy).toFixed(1)}%` : '');
  $('eta').textContent = p.step < p.maxSteps ? `ETA ${formatSeconds(p.eta)}` : 'done';
  page.step = p.step;
}

function onProgress(p) {
  plot(p);
  if (p.report) showReport(p.report);
  page.timings.firstStep ??= performance.now();
  const every = Number($('autosave').value);
  if (every > 0 && p.step % every === 0) autosave();
}

/**
 * Autosaves never pile up behind a run that steps faster than storage writes: those that fall due
 * while one is being written collapse into one save, made when that write ends.
 */
function autosave() {
  if (page.autosave) {
    page.autosave = 'again';
    return;
  }
  page.autosave = 'writing';
  saveToBrowser(ckptName()).catch((e) => showError(e.message)).finally(() => {
    const again = page.autosave === 'again';
    page.autosave = null;
    if (again) autosave();
  });
}

let idle = null; // resolves when a training run ends
const untilIdle = () => new Promise((resolve) => { idle = resolve; });

function onState(state) {
  page.state = state;
  if (state === 'idle') idle?.();
  $('train').disabled = state !== 'idle';
  $('pause').disabled = state !== 'running';
  $('resume').disabled = state !== 'paused';
  $('stop').disabled = state === 'idle';
  status({ idle: 'Ready', running: 'Training…', paused: 'Paused' }[state]);
}

const formatSeconds = (s) => (s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);

// ---- device -----------------------------------------------------------------------------------

function showAdapter({ adapter, backend }) {
  page.adapter = adapter;
  if (adapter.name) {
    const notes = [adapter.software && 'software, emulated on the CPU', adapter.f16 && 'shader-f16'].filter(Boolean);
    $('adapter').textContent = `WebGPU adapter: ${adapter.name}${notes.length ? ` (${notes.join('; ')})` : ''}`;
  } else {
    $('adapter').textContent = 'No WebGPU adapter.';
    $('fallback-notice').textContent = `${adapter.reason} Kiln trains on the CPU instead (slower, but the same model and results).`;
    $('fallback-notice').hidden = false;
    $('backend').querySelector('option[value=wgpu]').disabled = true;
  }
  $('backend').value = backend;
  page.backend = backend;
}

async function chooseBackend(backend) {
  await call(Request.useBackend, { backend });
  $('backend').value = backend;
  page.backend = backend;
}

/** On a software adapter the CPU backend may well be faster: time one step on each, keep the faster. */
async function pickFasterBackend() {
  $('backend-timing').textContent = 'timing one step on each backend…';
  const ms = await call(Request.timeBackends, { backends: ['wgpu', 'cpu'] });
  const faster = ms.cpu < ms.wgpu ? 'cpu' : 'wgpu';
  await chooseBackend(faster);
  page.timings.backends = ms;
  $('backend-timing').textContent =
    `WebGPU ${ms.wgpu.toFixed(0)} ms/step, CPU ${ms.cpu.toFixed(0)} ms/step: using ${faster === 'cpu' ? 'CPU' : 'WebGPU'}`;
}

/** Where the kernel variants chosen on this adapter are remembered, by the model's shapes. */
const kernelsKey = () => `kiln.kernels:${page.adapter.name}`;

/** The remembered choices: a cache, so an unreadable one is as good as none. */
function rememberedKernels() {
  try {
    return JSON.parse(localStorage.getItem(kernelsKey())) ?? {};
  } catch {
    return {};
  }
}

/** "staged-64 chosen, 3.1 ms vs registers-32 5.4 ms, burn 9.0 ms at 64×128×512" */
function describeTuning({ shape, timings, chosen }, name) {
  const best = timings.find((t) => t.variant === chosen);
  const others = timings.filter((t) => t !== best).map((t) => (t.error > 1e-4
    ? `${name(t.variant)} computed wrong` : `${name(t.variant)} ${t.ms.toFixed(1)} ms`));
  return `${name(chosen)} chosen, ${best.ms.toFixed(1)} ms vs ${others.join(', ')} at ${shape.join('×')}`;
}

/**
 * The kernel variants for the model on WebGPU (the matmul, attention's key tile, the norms' row
 * sums where the adapter has subgroups): on the first
 * use of the model's shapes on this adapter the worker times each variant and keeps the
 * fastest that computes right; later (other visits, restarted workers) the remembered choice is
 * used at once.
 */
async function ensureKernels() {
  if (page.backend !== 'wgpu' || page.untrusted) return;
  const known = rememberedKernels();
  $('kernel-choice').textContent ||= 'timing the kernels…';
  const tuning = await call(Request.tuneKernels, { known });
  if (!tuning.remembered) {
    try {
      localStorage.setItem(kernelsKey(), JSON.stringify({ ...known, [tuning.key]: tuning }));
    } catch {
      // Storage full or refused: the choice holds for this visit and is timed again next time.
    }
  }
  page.kernels = tuning;
  const parts = [`matmul: ${describeTuning(tuning.matmul, String)}`];
  if (tuning.attention) parts.push(`attention: ${describeTuning(tuning.attention, (keys) => `${keys}-key tiles`)}`);
  if (tuning.norm) parts.push(`norms: ${describeTuning(tuning.norm, (sum) => `${sum} sums`)}`);
  $('kernel-choice').textContent =
    `${parts.join('; ')} (${tuning.remembered ? 'remembered for this adapter' : 'timed just now'})`;
}

/**
 * WebGPU against the CPU on one fixed forward and backward pass (at start, and again on demand):
 * a GPU that computes wrong is not used.
 */
async function verifyGpu() {
  let check;
  const started = performance.now();
  try {
    check = await call(Request.verifyGpu);
  } catch (e) {
    check = { agree: false, error: e.message };
  }
  page.timings.gpuCheck = performance.now() - started;
  page.gpuCheck = check;
  if (!check.agree) await distrust(check, 'on a test computation');
  return check;
}

/** The GPU disagreed with the CPU: say so, offer a report, and use the CPU. */
async function distrust(check, when) {
  const pct = (x) => (100 * x).toFixed(x < 0.01 ? 3 : 1);
  const numbers = check.error ? `it failed: ${check.error}`
    : `loss ${check.loss[0]} vs ${check.loss[1]}, ${pct(check.difference)}% apart`;
  $('gpu-warning-text').textContent = `This GPU's results disagree with the CPU's ${when} (${numbers}): ` +
    'a driver or shader bug. Kiln uses the CPU instead; the report below helps fix it.';
  $('gpu-report').onclick = action(() => navigator.clipboard.writeText(JSON.stringify({
    adapter: page.adapter, check, when, userAgent: navigator.userAgent,
  }, null, 2)));
  $('gpu-warning').hidden = false;
  page.untrusted = check;
  await chooseBackend('cpu');
  $('backend-timing').textContent = 'the CPU: WebGPU computed wrong';
}
page.verifyGpu = verifyGpu;

$('backend').onchange = action(async () => {
  // A GPU that disagrees is not used: verifyGpu has moved the page to the CPU.
  if ($('backend').value === 'wgpu' && !page.gpuCheck && !(await verifyGpu()).agree) return;
  await chooseBackend($('backend').value);
  await ensureKernels();
  $('backend-timing').textContent = 'chosen by hand';
});

// ---- data and tokenizer -----------------------------------------------------------------------

/**
 * A classifier's pooling as chosen; an encoder has no last token to pool, so it reads [CLS]
 * unless mean is chosen.
 */
const pooling = () => (page.preset?.model.arch === 'bert' && $('pooling').value === 'last' ? 'cls' : $('pooling').value);

/** The finetuning choices: a classifier's pooling, and LoRA's settings when it is on. */
function finetuneOptions() {
  const lora = $('lora').checked && {
    rank: Number($('lora-rank').value),
    alpha: Number($('lora-alpha').value),
    targets: $('lora-targets').value.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean),
  };
  return { pooling: pooling(), lora: lora || null };
}

/** Shows `note` in element `id` while `work` runs; on failure the element's text comes back. */
async function showing(id, note, work) {
  const before = $(id).textContent;
  $(id).textContent = note;
  try {
    return await work;
  } catch (e) {
    $(id).textContent = before;
    throw e;
  }
}

/**
 * Makes `files` the training data; with `finetune` (and a model) the model stays. Without, a new
 * tokenizer is trained on it unless `tokenizer` is false (a checkpoint brings its own).
 */
async function loadCorpus(files, finetune = $('finetune').checked && page.configured, { tokenizer = true } = {}) {
  $('data-error').hidden = true;
  const names = files.map((f) => f.name).join(', ');
  const stats = await showing('corpus-stats', `Reading ${names}…`, call(Request.loadCorpus, {
    files, finetune, unknown: $('unknown-char').value, ...finetuneOptions(),
  }));
  const what = {
    text: 'characters',
    chat: 'prompt/completion pairs',
    classify: `labelled texts (classes: ${stats.classes?.join(', ')})`,
  }[stats.kind];
  $('corpus-stats').textContent = `${names}: ${stats.bytes.toLocaleString()} bytes; training on ` +
    `${stats.train.toLocaleString()}, validating on ${stats.val.toLocaleString()} ${what}` +
    (finetune ? ' (finetuning the current model)' : '');
  page.data = stats;
  page.files = files; // what a restarted worker loads again
  if (finetune) {
    page.step = 0;
    resetCharts();
    $('eta').textContent = ''; // a new run: the last one's "done" no longer applies
    showTask(stats.preset);
  } else {
    page.configured = false;
    if (tokenizer) await buildTokenizer();
  }
}

const dataError = (message) => {
  $('data-error').textContent = message;
  $('data-error').hidden = false;
};

/** The largest text the page reads, in bytes (the "largest text" field, in MB). */
const maxBytes = () => Number($('max-mb').value) * 1e6;
const tooLarge = (what, bytes) => new Error(`${what} is ${(bytes / 1e6).toFixed(1)} MB; this page reads ` +
  `texts of up to ${$('max-mb').value} MB (the "largest text" setting).`);

async function readFiles(fileList) {
  const big = [...fileList].find((f) => f.size > maxBytes());
  if (big) throw tooLarge(big.name, big.size);
  const files = [];
  for (const f of fileList) files.push({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) });
  if (files.length) await loadCorpus(files);
}

/** What a text URL may serve: text (not a web page), JSON lines, CSV, or plain bytes. */
const TEXT_TYPES = /^(text\/(?!html)|application\/(json|x-ndjson|jsonl|csv|octet-stream)\b)/i;

/** The bytes at `url`, read only up to the size cap; refused unless they are text. */
async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error(`Could not fetch ${url} (offline, or the server does not allow it).`);
  }
  if (!response.ok) throw new Error(`Could not fetch ${url}: HTTP ${response.status}.`);
  const type = response.headers.get('content-type');
  if (type && !TEXT_TYPES.test(type)) {
    throw new Error(`${url} serves ${type.split(';')[0]}, not a text file.`);
  }
  const declared = Number(response.headers.get('content-length'));
  if (declared > maxBytes()) throw tooLarge(url, declared);
  const chunks = [];
  let size = 0;
  for (const reader = response.body.getReader(); ;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes()) {
      await reader.cancel();
      throw tooLarge(url, size);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

/** A text the user names by URL: http(s) only, fetched when they ask and not before. */
async function loadUrl(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URL.`);
  }
  if (!['http:', 'https:'].includes(url.protocol)) throw new Error(`Only http and https URLs can be loaded, not ${url.protocol}`);
  await loadCorpus([{ name: url.pathname.split('/').pop() || 'download.txt', bytes: await fetchBytes(url) }]);
}

$('file').onchange = action((e) => readFiles(e.target.files), dataError);
const loadDefault = async () => loadCorpus([{ name: 'shakespeare.txt', bytes: await fetchBytes(defaultCorpusUrl) }]);
$('use-default').onclick = action(loadDefault, dataError);
$('load-url').onclick = action(() => loadUrl($('url').value), dataError);
$('use-paste').onclick = action(
  () => loadCorpus([{ name: 'pasted text', bytes: new TextEncoder().encode($('paste').value) }]),
  dataError,
);
const drop = $('drop');
// The drop zone is focusable: Enter or Space opens the file chooser, as a click on it would.
drop.onkeydown = (e) => {
  if (e.target === drop && (e.key === 'Enter' || e.key === ' ')) {
    e.preventDefault();
    $('file').click();
  }
};
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
drop.ondragleave = () => drop.classList.remove('over');
drop.ondrop = action(async (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const { files } = e.dataTransfer;
  // Weights mean a model (a downloaded checkpoint); anything else is text to train on.
  if ([...files].some((f) => f.name.endsWith('.safetensors'))) await openModel(files);
  else await readFiles(files);
}, dataError);

async function buildTokenizer() {
  const kind = $('tok-kind').value;
  const { vocabSize } = await showing('tok-stats', 'building…',
    call(Request.buildTokenizer, { kind, vocab_size: Number($('bpe-vocab').value) }));
  $('tok-stats').textContent = `${vocabSize} tokens`;
  page.configured = false;
  await describe();
}
$('build-tok').onclick = action(buildTokenizer);
$('tok-kind').onchange = () => { $('bpe-vocab').disabled = $('tok-kind').value === 'char'; };

// ---- model configuration ----------------------------------------------------------------------

const isCheckbox = (input) => input.type === 'checkbox';

function fillFields() {
  for (const input of fields) {
    const [part, key] = input.dataset.key.split('.');
    if (isCheckbox(input)) input.checked = page.preset[part][key];
    else input.value = page.preset[part][key];
  }
  showArch();
}

function readFields() {
  for (const input of fields) {
    const [part, key] = input.dataset.key.split('.');
    page.preset[part][key] = fieldValue(input);
  }
  showArch();
}

/** An LSTM has no heads: their field rests while it is chosen. */
function showArch() {
  $('n-head').disabled = page.preset.model.arch === 'lstm';
}

/** Live parameter count and validation of the fields (nothing is built). */
async function describe() {
  try {
    const { params: n, bytes } = await call(Request.describe, { preset: page.preset });
    page.params = n;
    $('params').textContent = `${(n / 1e6).toFixed(3)}M parameters; training needs about ${Math.ceil(bytes / 1e6)} MB`;
    $('config-error').textContent = '';
    return true;
  } catch (e) {
    $('params').textContent = '';
    $('config-error').textContent = e.message;
    return false;
  }
}

for (const input of fields) {
  input.oninput = () => {
    readFields();
    // A model field means a new model; a schedule field keeps the run going.
    if (input.dataset.key.startsWith('model.')) page.configured = false;
    page.scheduled = false;
    describe();
  };
}

$('preset').append(...PRESETS.map((name) => new Option(name, name)));
async function usePreset(name) {
  page.preset = await call(Request.preset, { name });
  $('preset').value = name;
  fillFields();
  page.configured = false;
  await describe();
}
$('preset').onchange = action(() => usePreset($('preset').value));

/** The address's settings for the fields, over the preset's values. */
async function useSharedFields() {
  for (const input of fields) {
    const value = shared.fields[input.dataset.key];
    if (value === undefined) continue;
    if (isCheckbox(input)) input.checked = value;
    else input.value = value;
  }
  readFields();
  page.configured = false;
  await describe();
}

$('copy-link').onclick = action(async () => {
  const defaults = await call(Request.preset, { name: $('preset').value });
  const link = address($('preset').value, defaults, fields);
  $('share-link').value = link;
  $('share-link').hidden = false;
  $('share-link').select();
  try {
    await navigator.clipboard.writeText(link);
    $('share-status').textContent = 'Copied.';
  } catch {
    $('share-status').textContent = 'Copy the selected link.';
  }
});

/**
 * Shows the panels of what the model does: chat for an instruction-tuned one, the classifier's,
 * fill-in-the-blank for an encoder of text, generation for the rest.
 */
function showTask(preset) {
  page.task = preset.model.task;
  const classify = page.task.kind === 'classify';
  const encoder = preset.model.arch === 'bert';
  $('chat').hidden = page.task.kind !== 'chat';
  $('classifier').hidden = !classify;
  $('fill').hidden = classify || !encoder;
  $('generation').hidden = classify || encoder;
  if (page.task.kind === 'classify') $('pooling').value = page.task.pooling;
}

/** A classifier's validation accuracy, macro-F1 and confusion matrix. */
function showReport(r) {
  page.report = r;
  $('class-metrics').textContent = `Validation (${r.examples} examples): accuracy ` +
    `${(100 * r.accuracy).toFixed(1)}%, macro-F1 ${r.macro_f1.toFixed(3)}. Rows: true class; columns: predicted.`;
  const cell = (tag, text) => Object.assign(document.createElement(tag), { textContent: text });
  const head = document.createElement('tr');
  head.append(cell('th', 'true \\ predicted'), ...r.classes.map((c) => cell('th', c)));
  const rows = r.confusion.map((counts, i) => {
    const tr = document.createElement('tr');
    tr.append(cell('th', r.classes[i]), ...counts.map((n) => cell('td', n)));
    return tr;
  });
  $('confusion').replaceChildren(head, ...rows);
}

/** Builds a fresh model from the fields unless the worker already holds one built from them. */
async function ensureConfigured() {
  if (!page.configured) {
    // A classifier's pooling is part of its task; the worker fills in the classes from the data.
    page.preset.model.task = { kind: 'classify', classes: [], pooling: pooling() };
    const { preset, half } = await call(Request.configure, { preset: page.preset });
    page.preset.model.task = preset.model.task;
    page.half = half;
    $('precision').textContent = !preset.model.mixed_precision ? ''
      : half ? 'Mixed precision: f16 matmuls and attention, f32 weights.'
        : 'Mixed precision is off here: this backend has no shader-f16, so the run is f32.';
    showTask(preset);
    page.configured = page.scheduled = true;
    page.step = 0;
    resetCharts();
  } else if (!page.scheduled) {
    await call(Request.schedule, { train: page.preset.train });
    page.scheduled = true;
  }
}

function resetCharts() {
  page.history = [];
  Object.values(charts).forEach((c) => c.reset());
}

// ---- training ---------------------------------------------------------------------------------

/** Starts the configured run with the page's GPU check and sample length. */
const startTraining = () => call(Request.train, {
  checkEvery: Number($('check-every').value),
  sampleTokens: Number($('sample-tokens').value),
});

$('train').onclick = action(async () => {
  if (page.step >= page.preset.train.max_steps) page.configured = false; // finished: start over
  $('eta').textContent = ''; // before any await: the last run's "done" no longer applies
  await ensureConfigured();
  await ensureKernels();
  await startTraining();
});
$('pause').onclick = action(() => call(Request.pause));
$('resume').onclick = action(() => call(Request.resume));
$('stop').onclick = action(() => call(Request.stop));

// ---- generation -------------------------------------------------------------------------------

/** The Generate section's sampling settings (the chat panel uses them too). */
function samplingFields() {
  const num = (id) => Number($(id).value);
  return {
    temperature: num('temperature'), top_k: num('top-k'), top_p: num('top-p'),
    max_tokens: num('max-tokens'), seed: num('seed'), stop: null,
  };
}

$('generate').onclick = action(async () => {
  await ensureConfigured();
  $('output').textContent = '';
  page.tokenEvents = 0;
  page.generated = null;
  $('generate').disabled = true;
  $('stop-gen').disabled = false;
  try {
    const { text } = await call(Request.generate, { prompt: $('prompt').value, sampling: samplingFields() });
    $('output').textContent = text;
    page.generated = text;
  } finally {
    $('generate').disabled = false;
    $('stop-gen').disabled = true;
  }
});
$('stop-gen').onclick = action(() => call(Request.stopGenerate));

$('predict').onclick = action(async () => {
  const probs = await call(Request.classify, { text: $('predict-text').value });
  page.prediction = probs;
  $('prediction').replaceChildren(...probs.map(([c, p]) =>
    Object.assign(document.createElement('li'), { textContent: `${c}: ${(100 * p).toFixed(1)}%` })));
}, (message) => { $('prediction').textContent = message; });

$('fill-run').onclick = action(async () => {
  const blanks = await call(Request.fill, { text: $('fill-text').value, k: 5 });
  page.fill = blanks;
  $('fill-results').replaceChildren(...blanks.map(({ guesses }) => Object.assign(
    document.createElement('li'),
    { textContent: guesses.map(([t, p]) => `${JSON.stringify(t)} ${(100 * p).toFixed(1)}%`).join(' · ') },
  )));
}, (message) => { $('fill-results').textContent = message; });

$('chat-send').onclick = action(async () => {
  const prompt = $('chat-input').value;
  const bubble = (who, text) => $('chat-log').appendChild(
    Object.assign(document.createElement('div'), { className: who, textContent: text }));
  bubble('user', prompt);
  $('chat-input').value = '';
  page.tokenTarget = bubble('model', '');
  $('chat-send').disabled = true;
  try {
    const { text } = await call(Request.generate, { prompt, sampling: samplingFields() });
    page.tokenTarget.textContent = text;
    page.lastAnswer = text;
  } finally {
    page.tokenTarget = null;
    $('chat-send').disabled = false;
  }
});
$('score-prompt').onclick = action(async () => {
  await ensureConfigured();
  const s = await call(Request.score, { text: $('prompt').value });
  $('score').textContent = `${s.tokens} tokens, log-probability ${s.log_prob.toFixed(2)}, perplexity ${s.perplexity.toFixed(2)}`;
}, (message) => { $('score').textContent = message; });

// ---- inspect: the next token, and surprise token by token -----------------------------------

/** A token as text a reader can see: newlines and spaces made visible. */
const visible = (token) => token.replaceAll('\n', '⏎').replaceAll(' ', '␣') || '∅';

async function showNextTokens() {
  await ensureConfigured();
  const top = await call(Request.nextTokens, { prompt: $('prompt').value, k: 10 });
  page.nextTokens = top;
  $('next-list').replaceChildren(...top.map(([token, p]) => {
    const item = document.createElement('li');
    const choose = document.createElement('button');
    const label = Object.assign(document.createElement('span'), { className: 'token', textContent: visible(token) });
    const bar = Object.assign(document.createElement('span'), { className: 'bar' });
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    const percent = document.createElement('span');
    percent.textContent = `${(100 * p).toFixed(1)}%`;
    choose.append(label, bar, percent);
    choose.title = `Add ${JSON.stringify(token)} to the prompt`;
    choose.onclick = inspect(async () => {
      $('prompt').value += token;
      await showNextTokens();
    });
    item.append(choose);
    return item;
  }));
}

async function showSurprise() {
  await ensureConfigured();
  const s = await call(Request.score, { text: $('prompt').value });
  page.surprise = s;
  // Colour by surprise (−log p, in nats): white at 0, full red at the most surprising token.
  const worst = Math.max(...s.per_token.map(([, lp]) => (lp == null ? 0 : -lp)), 1e-6);
  $('surprise-text').replaceChildren(...s.per_token.map(([token, lp]) => {
    const span = document.createElement('span');
    span.textContent = token;
    if (lp != null) {
      span.style.backgroundColor = `rgba(200, 30, 30, ${(0.6 * -lp / worst).toFixed(3)})`;
      span.title = `${JSON.stringify(token)}: −log p = ${(-lp).toFixed(2)} nats (p = ${(100 * Math.exp(lp)).toPrecision(3)}%)`;
    } else {
      span.title = `${JSON.stringify(token)}: the first token, nothing before it to predict it from`;
    }
    return span;
  }));
  $('surprise-total').textContent = `p(text) = Π p(token | before it): log-probability ${s.log_prob.toFixed(2)} ` +
    `over ${s.tokens} tokens, perplexity ${s.perplexity.toFixed(2)}`;
}

/** Tokens an attention map covers: its size grows with their square, and so does the table. */
const ATTENTION_TOKENS = 24;

/** Draws one head's map into a small canvas, a pixel per (query, key), darker = more weight. */
function drawMap(canvas, rows) {
  const t = rows.length;
  Object.assign(canvas, { width: t, height: t });
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(t, t);
  rows.forEach((row, q) => row.forEach((w, k) => {
    const at = 4 * (q * t + k);
    image.data.set([255 - 227 * w, 255 - 160 * w, 255 - 75 * w, 255], at);
  }));
  ctx.putImageData(image, 0, 0);
}

/** The chosen head as a table: tokens on both axes, each cell's weight in its colour and text. */
function showAttentionDetail(maps, layer, head) {
  const rows = maps.weights[layer][head];
  const table = $('attention-detail');
  const caption = document.createElement('caption');
  caption.textContent = `Layer ${layer + 1}, head ${head + 1}: each row is a token, and how its attention ` +
    'splits over the tokens up to it (each row sums to 1).';
  const header = document.createElement('tr');
  header.append(document.createElement('td'), ...maps.tokens.map((token) =>
    Object.assign(document.createElement('th'), { scope: 'col', textContent: visible(token) })));
  const body = rows.map((row, q) => {
    const tr = document.createElement('tr');
    tr.append(Object.assign(document.createElement('th'), { scope: 'row', textContent: visible(maps.tokens[q]) }));
    tr.append(...row.map((w, k) => {
      const cell = document.createElement('td');
      cell.style.backgroundColor = `rgba(28, 95, 180, ${w.toFixed(3)})`;
      cell.title = `${JSON.stringify(maps.tokens[q])} → ${JSON.stringify(maps.tokens[k])}: ${w.toFixed(3)}`;
      cell.append(Object.assign(document.createElement('span'), { className: 'visually-hidden', textContent: w.toFixed(3) }));
      return cell;
    }));
    return tr;
  });
  const thead = document.createElement('thead');
  const tbody = document.createElement('tbody');
  thead.append(header);
  tbody.append(...body);
  table.replaceChildren(caption, thead, tbody);
  page.attentionShown = { layer, head };
  for (const b of $('attention-grid').querySelectorAll('button')) {
    b.setAttribute('aria-pressed', String(b.dataset.layer === String(layer) && b.dataset.head === String(head)));
  }
}

async function showAttention() {
  await ensureConfigured();
  const maps = await call(Request.attention, { prompt: $('prompt').value, maxTokens: ATTENTION_TOKENS });
  page.attention = maps;
  const grid = $('attention-grid');
  grid.style.gridTemplateColumns = `repeat(${maps.weights[0].length}, auto)`;
  grid.replaceChildren(...maps.weights.flatMap((heads, layer) => heads.map((rows, head) => {
    const button = document.createElement('button');
    Object.assign(button.dataset, { layer, head });
    button.setAttribute('aria-label', `Layer ${layer + 1}, head ${head + 1}`);
    button.title = `Layer ${layer + 1}, head ${head + 1}`;
    const canvas = document.createElement('canvas');
    drawMap(canvas, rows);
    button.append(canvas);
    button.onclick = () => showAttentionDetail(maps, layer, head);
    return button;
  })));
  $('attention-view').hidden = false;
  showAttentionDetail(maps, 0, 0);
}

async function showEmbeddings() {
  await ensureConfigured();
  const e = await call(Request.embeddings);
  page.embeddings = e;
  $('embeddings-view').hidden = false;
  const percent = (share) => `${(100 * share).toFixed(1)}%`;
  const labels = e.tokens.map(visible);
  const chart = $('embeddings-chart');
  scatterChart(chart, 'Token embeddings, PCA', e.points, labels, {
    xLabel: `PC1 (${percent(e.explained[0])} of the variance)`,
    yLabel: `PC2 (${percent(e.explained[1])})`,
  });
  // The text equivalent: how much the view shows, and the tokens at each end of each axis.
  const ends = (axis) => {
    const order = e.points.map((p, i) => [p[axis], i]).sort((a, b) => a[0] - b[0]).map(([, i]) => labels[i]);
    return `${order.slice(0, 5).join(' ')} … ${order.slice(-5).join(' ')}`;
  };
  chart.append(Object.assign(document.createElement('p'), {
    className: 'chart-text',
    textContent: `${e.tokens.length} tokens; the two axes show ${percent(e.explained[0] + e.explained[1])} of the ` +
      `embeddings' variance. Along PC1, from low to high: ${ends(0)}. Along PC2: ${ends(1)}.`,
  }));
}

const inspectError = (message) => { $('inspect-error').textContent = message; };
const inspect = (view) => action(async () => { inspectError(''); await view(); }, inspectError);
$('next-tokens').onclick = inspect(showNextTokens);
$('surprise').onclick = inspect(showSurprise);
$('attention').onclick = inspect(showAttention);
$('embeddings').onclick = inspect(showEmbeddings);

// ---- demo: pretrain on Shakespeare, finetune on Milton ---------------------------------------

async function trainToEnd() {
  const done = untilIdle();
  $('eta').textContent = '';
  await ensureConfigured();
  await ensureKernels();
  await startTraining();
  await done;
}

async function sample() {
  const sampling = { temperature: 0.8, top_k: 0, top_p: 1, max_tokens: 200, seed: 0, stop: null };
  return (await call(Request.generate, { prompt: '', sampling })).text;
}

$('demo-milton').onclick = action(async () => {
  $('demo-milton').disabled = true;
  const result = (text) => { $('demo-result').textContent = text; };
  try {
    result('Pretraining on Shakespeare…');
    await loadCorpus([{ name: 'shakespeare.txt', bytes: await fetchBytes(defaultCorpusUrl) }], false);
    await trainToEnd();
    $('demo-before').textContent = `Before finetuning:\n${await sample()}`;
    await loadCorpus([{ name: 'milton.txt', bytes: await fetchBytes(miltonUrl) }], true);
    const { valLoss: before } = await call(Request.evaluate);
    result(`Milton validation loss before finetuning: ${before.toFixed(3)}. Finetuning on Milton…`);
    await trainToEnd();
    const { valLoss: after } = await call(Request.evaluate);
    $('demo-after').textContent = `After finetuning on Milton:\n${await sample()}`;
    page.demo = { before, after };
    result(`Milton validation loss: ${before.toFixed(3)} before finetuning, ${after.toFixed(3)} after.`);
  } finally {
    $('demo-milton').disabled = false;
  }
});

// ---- demo: who wrote this line, Shakespeare or Milton? ------------------------------------------

/** Trains the configured classifier to its last step and returns its validation report. */
async function classifierReport() {
  await trainToEnd();
  return (await call(Request.evaluate)).report;
}

/** The authorship demo's WordPiece vocabulary, as measured in docs/models.md. */
const AUTHORSHIP_VOCAB = 2000;

/** Sets the run's steps (and the steps field), applied when it next trains. */
function setSteps(steps) {
  $('steps').value = steps;
  readFields();
  page.scheduled = false;
}

$('demo-authorship').onclick = action(async () => {
  $('demo-authorship').disabled = true;
  const result = (text) => { $('authorship-result').textContent = text; };
  const scores = (r) => `accuracy ${(100 * r.accuracy).toFixed(1)}%, macro-F1 ${r.macro_f1.toFixed(3)}`;
  const optional = (id) => (Number($(id).value) > 0 ? Number($(id).value) : null);
  let steps; // the model's steps, which the pretraining phase changes for a while
  try {
    if ($('preset').value !== 'authorship-bert') await usePreset('authorship-bert');
    steps = page.preset.train.max_steps;
    const pretrainSteps = optional('authorship-pretrain-steps') ?? steps;
    if ($('authorship-wordpiece').checked) {
      $('tok-kind').value = 'wordpiece';
      $('bpe-vocab').value = AUTHORSHIP_VOCAB;
      $('bpe-vocab').disabled = false;
    }
    const [shakespeare, milton] = await Promise.all([defaultCorpusUrl, miltonUrl]
      .map(async (url) => new TextDecoder().decode(await fetchBytes(url))));
    const set = await call(Request.authorship, {
      shakespeare, milton, passages: Number($('authorship-passages').value), labelled: optional('authorship-labelled'),
    });
    const file = (name, text) => [{ name, bytes: new TextEncoder().encode(text) }];
    result('Training the encoder on the labels from scratch…');
    // Both encoders read with one tokenizer, learnt from the text to pretrain on (training is
    // deterministic, so loading the text again learns the same one): what only held-out lines
    // use becomes [UNK], as in BERT. From scratch is a fresh encoder finetuned on the labels.
    await loadCorpus(file('authorship.txt', set.text), false);
    await ensureConfigured();
    await loadCorpus(file('authorship.jsonl', set.jsonl), true);
    setSteps(steps);
    const scratch = await classifierReport();
    result(`From scratch: ${scores(scratch)}. Pretraining by masking on both books, the held-out passages excepted…`);
    await loadCorpus(file('authorship.txt', set.text), false);
    setSteps(pretrainSteps);
    await trainToEnd();
    result(`From scratch: ${scores(scratch)}. Finetuning the pretrained encoder on the labels…`);
    await loadCorpus(file('authorship.jsonl', set.jsonl), true);
    setSteps(steps); // the finetuned run kept the pretraining's schedule
    const pretrained = await classifierReport();
    page.authorship = { scratch, pretrained };
    result(`On ${pretrained.examples} held-out lines: from scratch ${scores(scratch)}; ` +
      `pretrained by masking, then finetuned ${scores(pretrained)}.`);
  } finally {
    if (steps !== undefined && page.preset.train.max_steps !== steps) setSteps(steps);
    $('demo-authorship').disabled = false;
  }
});

// ---- comparing runs ----------------------------------------------------------------------------

/** How the comparison names a model: its family, shape and size. */
const FAMILY = { gpt: 'GPT', bert: 'BERT', lstm: 'LSTM' };
const modelLabel = (m, params) => `${FAMILY[m.arch] ?? 'GPT'} ${m.n_layer}×${m.n_embd}` +
  (params ? `, ${(params / 1e6).toFixed(2)}M` : '');

$('compare-add').onclick = action(() => {
  if (page.history.length === 0) throw new Error('This run has no steps yet: train it first.');
  compare.add(summarize(`${modelLabel(page.preset.model, page.params)} (${page.history.at(-1).step} steps)`, page.history));
});
$('compare-clear').onclick = () => compare.clear();

/** Adds a saved checkpoint's run to the comparison. */
async function compareSaved(name) {
  const { history, meta } = await storage.load(name);
  if (history.length === 0) throw new Error(`"${name}" was saved without its training history.`);
  const preset = JSON.parse(new TextDecoder().decode(meta));
  const points = history.map((p) => ({ ...p, tokens: p.tokens ?? p.step * tokensPerStep(preset) }));
  compare.add(summarize(`${name}: ${modelLabel(preset.model)}`, points));
}

// ---- checkpoints ------------------------------------------------------------------------------

const ckptStatus = (text) => { $('ckpt-status').textContent = text; };
const kb = (bytes) => (bytes < 1e6 ? `${(bytes / 1e3).toFixed(0)} kB` : `${(bytes / 1e6).toFixed(1)} MB`);

async function refreshSaved() {
  const rows = (await storage.list()).map((c) => {
    const tr = document.createElement('tr');
    tr.dataset.name = c.name;
    const m = c.model;
    const task = [m.task && m.task.kind !== 'text' && m.task.kind, m.lora && `LoRA r${m.lora.rank}`].filter(Boolean);
    const cells = [c.name, c.step, `${(m.arch ?? 'gpt') === 'gpt' ? '' : `${FAMILY[m.arch]} `}${m.n_layer}×${m.n_embd}, ctx ${m.block_size}, vocab ${m.vocab_size}${task.map((t) => `, ${t}`).join('')}`,
      kb(c.bytes), new Date(c.date).toLocaleString()];
    tr.append(...cells.map((text) => Object.assign(document.createElement('td'), { textContent: text })));
    const buttons = document.createElement('td');
    const button = (label, fn) => Object.assign(document.createElement('button'), { textContent: label, className: label.toLowerCase(), onclick: action(fn) });
    buttons.append(button('Load', () => loadSaved(c.name)), button('Compare', () => compareSaved(c.name)),
      button('Delete', () => deleteSaved(c.name)));
    tr.append(buttons);
    return tr;
  });
  $('saved').querySelector('tbody').replaceChildren(...rows);
}

/** The worker's model is now the checkpoint's: show its configuration, step and chart history. */
function adoptCheckpoint(info, source, history = []) {
  page.preset = info.preset;
  fillFields();
  showTask(info.preset);
  page.configured = page.scheduled = true;
  resetCharts();
  history.forEach(plot);
  const report = history.findLast((p) => p.report)?.report;
  if (report) showReport(report);
  page.step = info.step;
  $('tok-stats').textContent = `${info.vocabSize} tokens (from the checkpoint)`;
  $('params').textContent = `${(info.params / 1e6).toFixed(3)}M parameters`;
  $('step').textContent = `step ${info.step} / ${info.preset.train.max_steps}`;
  $('eta').textContent = '';
  ckptStatus(`Loaded ${source} at step ${info.step}.${info.note ? ` ${info.note}` : ''}`);
}

/** One save at a time (autosaves queue behind a save in progress). */
let saving = Promise.resolve();
function saveToBrowser(name) {
  saving = saving.catch(() => {}).then(async () => {
    const ckpt = await call(Request.save);
    const { step } = JSON.parse(ckpt.meta);
    // The chart history up to the checkpoint's step: training goes on while the save is written.
    await storage.save(name, ckpt, page.history.filter((p) => p.step <= step), page.files);
    await refreshSaved();
    ckptStatus(`Saved "${name}" in this browser at step ${step}.`);
  });
  return saving;
}

/** Loads a checkpoint saved in this browser, with the text it was training on when saved. */
async function loadSaved(name) {
  const { history, files, ...ckpt } = await storage.load(name);
  if (files) await loadCorpus(files, false, { tokenizer: false });
  try {
    adoptCheckpoint(await call(Request.load, ckpt), `"${name}"`, history);
  } catch (e) {
    if (files) await buildTokenizer(); // the text stays, ready for a new model
    throw e;
  }
}

async function deleteSaved(name) {
  await saving.catch(() => {}); // a save in progress may use the text this delete frees
  await storage.remove(name);
  await refreshSaved();
  ckptStatus(`Deleted "${name}".`);
}

const ckptName = () => $('ckpt-name').value.trim() || 'my-model';
$('save-browser').onclick = action(() => saveToBrowser(ckptName()));
$('storage-kind').textContent = `Checkpoints are kept in this browser's ${storage.kind() === 'opfs' ? 'origin-private file system' : 'IndexedDB'}.`;

function downloadFiles(files) {
  for (const [name, bytes] of files) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([bytes]));
    a.download = name;
    a.click();
    URL.revokeObjectURL(a.href);
  }
}

$('download').onclick = action(async () => {
  const ckpt = await call(Request.save);
  const base = `${ckptName()}-step${page.step ?? 0}`;
  const files = [[`${base}.json`, ckpt.meta], [`${base}.safetensors`, ckpt.weights]];
  if (ckpt.optimizer) files.push([`${base}.optimizer.safetensors`, ckpt.optimizer]);
  downloadFiles(files);
});

// transformers' from_pretrained(dir) wants exactly these names: put the four in one folder.
$('download-transformers').onclick = action(async () => {
  const hf = await call(Request.exportTransformers);
  downloadFiles([['model.safetensors', hf.weights], ['config.json', hf.config], ['tokenizer.json', hf.tokenizer],
    ['tokenizer_config.json', hf.tokenizerConfig]]);
});

$('download-adapters').onclick = action(async () => {
  const peft = await call(Request.exportAdapters);
  downloadFiles([['adapter_model.safetensors', peft.weights], ['adapter_config.json', peft.config]]);
});

/**
 * Opens a model from files: Kiln's name.json, name.safetensors (and name.optimizer.safetensors to
 * resume the optimizer), or transformers' config.json, tokenizer.json and model.safetensors.
 */
async function openModel(fileList) {
  const files = Object.fromEntries([...fileList].map((f) => [f.name, f]));
  if (files['config.json'] && files['tokenizer.json']) {
    const weights = files['model.safetensors'];
    if (!weights) throw new Error('A transformers model needs its model.safetensors beside config.json and tokenizer.json.');
    // The File itself: the worker streams it into the module (GPT-2 small's is 500 MB).
    const parts = {
      weights,
      config: await files['config.json'].text(),
      tokenizer: await files['tokenizer.json'].text(),
    };
    const kind = /"model_type"\s*:\s*"bert"/.test(parts.config) ? 'BERT' : 'GPT-2';
    adoptCheckpoint(await call(Request.importTransformers, parts), `the ${kind} model`);
    return;
  }
  const parts = {};
  for (const f of fileList) {
    const part = f.name.endsWith('.optimizer.safetensors') ? 'optimizer'
      : f.name.endsWith('.safetensors') ? 'weights' : f.name.endsWith('.json') ? 'meta' : null;
    if (part) parts[part] = new Uint8Array(await f.arrayBuffer());
  }
  if (!parts.meta || !parts.weights) {
    throw new Error('Choose the checkpoint\'s .json and .safetensors files (and its .optimizer.safetensors to resume the optimizer), or a transformers model\'s config.json, tokenizer.json and model.safetensors.');
  }
  adoptCheckpoint(await call(Request.load, parts), 'the uploaded checkpoint');
}
$('upload').onchange = action((e) => openModel(e.target.files));

// ---- start, and recovery from a panic ---------------------------------------------------------

/**
 * A fresh worker on WebGPU (or the CPU), with the backend the page address asks for. The GPU is
 * checked before it is used: at start, or (when the address asks for the CPU) when WebGPU is first
 * chosen, so a CPU page does not wait seconds on a GPU it may never use. A restarted worker checks
 * it again once it has been checked.
 */
async function startBackend() {
  startWorker();
  showAdapter(await call(Request.init));
  const forced = shared.backend;
  if (page.backend === 'wgpu' && (forced !== 'cpu' || page.gpuCheck)) await verifyGpu();
  if (forced) await chooseBackend(forced);
  return forced;
}

async function start() {
  if (shared.problems.length) {
    $('address-problems').textContent = `Not taken from the page address: ${shared.problems.join('; ')}.`;
    $('address-problems').hidden = false;
  }
  for (const [id, value] of shared.elements) $(id).value = value;
  $('tok-kind').onchange();
  status('Starting WebGPU…');
  const forced = await startBackend();
  status('Loading the bundled corpus…');
  await loadDefault();
  await usePreset(shared.preset ?? (page.adapter.name && !page.adapter.software ? 'shakespeare-baby' : 'tiny'));
  await useSharedFields();
  await ensureConfigured();
  refreshSaved().catch((e) => ckptStatus(e.message));
  await ensureKernels();
  // The backend is chosen before anything can run on it (a run started on one backend would
  // otherwise move to the other under it).
  if (!forced && page.adapter.software && !page.untrusted) {
    $('train').disabled = true;
    status('Timing one step on each backend…');
    await pickFasterBackend();
    $('train').disabled = false;
  } else {
    $('backend-timing').textContent = forced ? 'chosen by the page address' : '';
  }
  page.timings.ready = performance.now();
  status(`Ready to train (${((page.timings.ready - page.timings.start) / 1000).toFixed(1)} s to load)`);
  document.body.dataset.ready = 'true';
}

/**
 * The worker's module panicked (a bug) or lost its GPU device, and is unusable: a new worker
 * takes the same data and settings, and the page offers the newest saved checkpoint.
 */
function restart(reason) {
  if (document.body.dataset.ready === 'restarting') return; // one restart for one failure
  recover(reason).catch((e) => showError(e.message));
}

async function recover(reason) {
  const busy = document.body.dataset.ready;
  document.body.dataset.ready = 'restarting';
  worker.terminate();
  const sentence = `${reason}; Kiln restarted its worker, and the model in memory is lost.`;
  call.abandon(sentence);
  onState('idle');
  page.restarts = (page.restarts ?? 0) + 1;
  showError(sentence);
  await startBackend();
  if (page.backend !== $('backend').value) await chooseBackend($('backend').value);
  if (page.files) await loadCorpus(page.files, false);
  page.configured = false;
  await ensureConfigured();
  await ensureKernels();
  const newest = (await storage.list()).sort((a, b) => a.date.localeCompare(b.date)).at(-1);
  if (newest) {
    $('recover').textContent = `Load "${newest.name}" (step ${newest.step})`;
    $('recover').onclick = action(async () => {
      $('recover').hidden = true;
      $('error').hidden = true;
      await loadSaved(newest.name);
    });
    $('recover').hidden = false;
  }
  document.body.dataset.ready = busy;
}
$('presentation').onclick = () => {
  const on = document.body.classList.toggle('presentation');
  $('presentation').setAttribute('aria-pressed', String(on));
  // uPlot draws at a fixed size: redraw the charts at their new width.
  for (const chart of Object.values(charts)) chart.resize();
};

// ---- offline --------------------------------------------------------------------------------

// The service worker (vite.config.js) stores the page, its wasm and the bundled texts: after one
// visit Kiln starts without a network. A new build waits until the user takes it.
const updateSW = registerSW({
  onOfflineReady() {
    $('offline').textContent = 'Ready to work offline: this page, its model code and the bundled texts are stored in this browser.';
    page.offlineReady = true;
  },
  onNeedRefresh() {
    $('update').hidden = false;
  },
});
$('update-now').onclick = () => updateSW(true);

/** Test hooks: a panic inside the module, a lost GPU device (see protocol.js). */
page.debugPanic = () => call(Request.debugPanic).catch(() => {});
page.debugLoseDevice = () => call(Request.debugLoseDevice);
page.debugCorruptKernel = (factor) => call(Request.debugCorruptKernel, { factor });

start().catch((e) => {
  showError(e.message);
  status('Could not start');
});
