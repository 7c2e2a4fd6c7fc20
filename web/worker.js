// The training worker: it owns the wasm module, so model code never runs on the page's thread.
// Every wasm call goes through `exclusive`, one at a time: a generation asked for during
// training runs between two steps.
import init, * as kiln from './pkg/kiln.js';
import wasmUrl from './pkg/kiln_bg.wasm?url';
import { Event, Request } from './protocol.js';

const post = (message, transfer = []) => self.postMessage(message, transfer);
// Called by the module's panic hook (crate/src/web.rs) before the panic ends the call.
self.kilnPanic = (message) => post({ type: Event.panic, message });

// Every GPU device the module opens is watched: losing one (a driver reset, the GPU process
// restarting, or a test's destroy()) leaves the module's tensors unusable, like a panic does.
// It also gets `subgroups` where the adapter has them: wgpu 30 does not know that feature's
// name, so it never asks for it, and the norms' subgroup kernels need it.
const devices = [];
if (self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (descriptor = {}) {
    const features = [...(descriptor.requiredFeatures ?? [])];
    if (this.features.has('subgroups') && !features.includes('subgroups')) features.push('subgroups');
    const device = await requestDevice.call(this, { ...descriptor, requiredFeatures: features });
    devices.push(device);
    device.lost.then((info) => post({ type: Event.deviceLost, message: info.message || info.reason }));
    return device;
  };
}

let lock = Promise.resolve();
function exclusive(fn) {
  const result = lock.then(fn);
  lock = result.catch(() => {});
  return result;
}

const run = { state: 'idle', stop: false, resume: null, generating: false, evalInterval: 0, checkEvery: 0, sampleTokens: 0, backend: 'cpu' };
function setState(state) {
  run.state = state;
  post({ type: Event.state, state });
}

/** The WebGPU adapter, described for the page; `software` when it emulates a GPU on the CPU. */
async function adapterInfo() {
  if (!self.navigator.gpu) {
    return { name: null, software: false, reason: 'This browser has no WebGPU (navigator.gpu is missing).' };
  }
  const adapter = await self.navigator.gpu.requestAdapter();
  if (!adapter) {
    return { name: null, software: false, reason: 'WebGPU is present but gave no adapter (no usable GPU or driver).' };
  }
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  const fallback = info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false;
  const software = fallback || /swiftshader|llvmpipe|lavapipe|software/i.test(name);
  return { name, software, f16: adapter.features.has('shader-f16') };
}

const parse = (json) => JSON.parse(json);

const handlers = {
  async [Request.init]() {
    await init({ module_or_path: wasmUrl });
    const adapter = await adapterInfo();
    let backend = 'cpu';
    if (adapter.name) {
      try {
        adapter.burn = await kiln.initWebgpu(self.navigator.deviceMemory);
        kiln.noteSubgroups(devices.at(-1)?.features.has('subgroups') ?? false);
        backend = 'wgpu';
      } catch (e) {
        adapter.reason = e.message;
        adapter.name = null;
      }
    }
    await kiln.useBackend(backend);
    run.backend = backend;
    return { adapter, backend };
  },
  [Request.verifyGpu]: async () => parse(await kiln.crossCheck()),
  [Request.debugCorruptKernel]({ factor }) {
    kiln.debugCorruptKernel(factor);
    return {};
  },
  [Request.loadCorpus]: async ({ files, finetune, unknown, pooling, lora }) => parse(await kiln.loadCorpus(
    files.map((f) => f.name), files.map((f) => f.bytes), Boolean(finetune), unknown || undefined,
    pooling ?? 'last', lora ? JSON.stringify(lora) : undefined,
  )),
  [Request.evaluate]: async () => parse(await kiln.evaluate()),
  [Request.classify]: async ({ text }) => parse(await kiln.classify(text)),
  [Request.fill]: async ({ text, k }) => parse(await kiln.fill(text, k)),
  [Request.buildTokenizer]: ({ kind, vocab_size }) =>
    parse(kiln.buildTokenizer(JSON.stringify(kind === 'char' ? { kind } : { kind, vocab_size }))),
  [Request.authorship]: ({ shakespeare, milton, passages, labelled }) =>
    parse(kiln.authorship(shakespeare, milton, passages, labelled ?? undefined)),
  [Request.preset]: ({ name }) => parse(kiln.presetJson(name)),
  [Request.describe]: ({ preset }) => parse(kiln.describe(JSON.stringify(preset))),
  [Request.configure]({ preset }) {
    const result = parse(kiln.configure(JSON.stringify(preset)));
    run.evalInterval = preset.train.eval_interval;
    return result;
  },
  async [Request.schedule]({ train }) {
    await kiln.setSchedule(JSON.stringify(train));
    run.evalInterval = train.eval_interval;
    return {};
  },
  async [Request.useBackend]({ backend }) {
    await kiln.useBackend(backend);
    run.backend = backend;
    return { backend };
  },
  async [Request.timeBackends]({ backends }) {
    const ms = {};
    for (const b of backends) ms[b] = await kiln.timeStep(b, 2);
    return ms;
  },
  [Request.generate]({ prompt, sampling }) {
    run.generating = true;
    const onText = (text) => {
      post({ type: Event.token, text });
      return run.generating;
    };
    return kiln
      .generate(prompt, JSON.stringify(sampling), onText)
      .then((text) => ({ text }))
      .finally(() => { run.generating = false; });
  },
  [Request.score]: async ({ text }) => parse(await kiln.score(text)),
  [Request.nextTokens]: async ({ prompt, k }) => parse(await kiln.nextTokens(prompt, k)),
  [Request.attention]: async ({ prompt, maxTokens }) => parse(await kiln.attention(prompt, maxTokens)),
  [Request.embeddings]: async () => parse(await kiln.embeddings()),
  [Request.tuneKernels]: async ({ known }) => parse(await kiln.tuneKernels(JSON.stringify(known))),
  async [Request.benchKernels]({ name, vocab, batch, reps, matmul, stepReps }) {
    const preset = parse(kiln.presetJson(name));
    preset.model.vocab_size = vocab;
    const json = await kiln.benchKernels(JSON.stringify(preset), batch, reps, new Uint32Array(matmul), stepReps);
    return parse(json);
  },
  [Request.save]: () => kiln.saveCheckpoint(),
  [Request.load]({ meta, weights, optimizer }) {
    const info = parse(kiln.loadCheckpoint(meta, weights, optimizer ?? undefined));
    run.evalInterval = info.preset.train.eval_interval;
    return info;
  },
  [Request.debugPanic]: () => kiln.debugPanic(),
  [Request.debugLoseDevice]() {
    devices.forEach((d) => d.destroy());
    return { devices: devices.length };
  },
  [Request.exportTransformers]: () => kiln.exportTransformers(),
  [Request.exportAdapters]: () => kiln.exportAdapters(),
  async [Request.importTransformers]({ weights, config, tokenizer }) {
    // The file streams into wasm memory a piece at a time: JavaScript never holds it whole.
    kiln.uploadBegin(weights.size);
    const reader = weights.stream().getReader();
    for (let piece = await reader.read(); !piece.done; piece = await reader.read()) kiln.uploadChunk(piece.value);
    const info = parse(kiln.importTransformers(config, tokenizer));
    run.evalInterval = info.preset.train.eval_interval;
    return info;
  },
};

/** Requests that must not wait behind a training step. */
const immediate = {
  [Request.train]({ checkEvery, sampleTokens }) {
    if (run.state !== 'idle') throw new Error('Training is already running.');
    run.checkEvery = checkEvery ?? 0;
    run.sampleTokens = Math.max(0, Math.floor(sampleTokens)) || 0; // a blank or odd field: none
    train().catch((e) => post({ type: Event.error, id: null, code: 'train', message: e.message }));
    return {};
  },
  [Request.pause]() {
    if (run.state === 'running') setState('paused');
    return {};
  },
  [Request.resume]() {
    if (run.state === 'paused') {
      setState('running');
      run.resume?.();
    }
    return {};
  },
  [Request.stop]() {
    run.stop = true;
    run.resume?.();
    return {};
  },
  [Request.stopGenerate]() {
    run.generating = false;
    return {};
  },
};

/** How the sample after each evaluation is drawn; its length is the run's `sampleTokens`. */
const SAMPLE = { temperature: 0.8, top_k: 0, top_p: 1.0, seed: 0, stop: null };

async function train() {
  run.stop = false;
  setState('running');
  const started = performance.now();
  let startStep = null;
  try {
    for (;;) {
      if (run.state === 'paused') await new Promise((r) => { run.resume = r; });
      if (run.stop) break;
      const before = performance.now();
      const m = parse(await exclusive(() => kiln.trainStep()));
      const stepMs = performance.now() - before;
      startStep ??= m.step - 1;
      const every = run.evalInterval;
      let report = null;
      let maskedAccuracy = null;
      if (m.step === m.max_steps || (every > 0 && m.step % every === 0)) {
        ({ valLoss: m.val_loss, report, maskedAccuracy } = parse(await exclusive(() => kiln.evaluate())));
      }
      const perStep = (performance.now() - started) / 1000 / (m.step - startStep);
      post({
        type: Event.progress,
        step: m.step,
        maxSteps: m.max_steps,
        loss: m.loss,
        valLoss: m.val_loss ?? null,
        report,
        maskedAccuracy,
        lr: m.lr,
        tokensPerSec: m.tokens_per_sec,
        stepMs,
        eta: perStep * (m.max_steps - m.step),
      });
      // A classifier's report is its sample, an encoder's its masked accuracy; a text model
      // shows what it writes.
      if (m.val_loss != null && !report && maskedAccuracy == null && run.sampleTokens > 0) {
        const sampling = { ...SAMPLE, max_tokens: run.sampleTokens };
        const text = await exclusive(() => kiln.generate('', JSON.stringify(sampling), () => true));
        post({ type: Event.sample, step: m.step, text });
      }
      if (run.backend === 'wgpu' && run.checkEvery > 0 && m.step % run.checkEvery === 0) {
        const check = parse(await exclusive(() => kiln.checkRun()));
        if (!check.agree) {
          post({ type: Event.untrusted, step: m.step, check });
          break;
        }
      }
      if (m.step >= m.max_steps) break;
      // Let pause/stop/generate messages in between steps, even on a backend that never awaits.
      await new Promise((r) => setTimeout(r, 0));
    }
  } finally {
    run.resume = null;
    setState('idle');
  }
}

self.onmessage = async ({ data }) => {
  const { type, id, ...args } = data;
  try {
    let result;
    if (immediate[type]) result = immediate[type](args);
    else if (handlers[type]) result = await exclusive(() => handlers[type](args));
    else throw new Error(`unknown request "${type}"`);
    post({ type: Event.reply, id, result });
  } catch (e) {
    post({ type: Event.error, id, code: type, message: e?.message ?? String(e) });
  }
};
