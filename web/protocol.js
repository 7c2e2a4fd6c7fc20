// The one definition of the messages between the page (main.js) and the training worker
// (worker.js). The page sends requests, each with an `id`; the worker answers each one with
// `reply` (same id, a result) or `error` (same id, a sentence for the user). Training and
// generation also push events while they run.

/** Requests, page → worker. The comment gives the payload → the reply's result. */
export const Request = Object.freeze({
  /** {} → {adapter: {name, software, reason?}, backend} : start WebGPU if the browser has it. */
  init: 'init',
  /**
   * {files: [{name, bytes: Uint8Array}], finetune?, unknown?, pooling?, lora?} → {files, bytes,
   * kind: 'text' | 'chat' | 'classify', train, val, classes?, preset?}. Text files, or one .jsonl
   * of {prompt, completion} (chat) or .csv/.jsonl of {text, label} (classify); `train` and `val`
   * count characters or examples. With `finetune` the current model stays and starts a new run
   * on this data (its new `preset` comes back): `pooling` ('last' | 'mean') for a classifier,
   * `lora` ({rank, alpha, targets: ['q', 'v', ...]}) to train adapters only; `unknown` (one
   * character it knows) replaces characters a char tokenizer never saw.
   */
  loadCorpus: 'loadCorpus',
  /** {kind: 'char'} | {kind: 'bpe' | 'wordpiece', vocab_size} → {vocabSize} */
  buildTokenizer: 'buildTokenizer',
  /**
   * {shakespeare, milton, passages, labelled} → {jsonl, text}: the authorship set built from the
   * two texts (labelled lines with their split, `passages` passages per author, of which
   * `labelled` training passages keep their labels, all if null) and the text to pretrain on
   * (both books without the held-out passages).
   */
  authorship: 'authorship',
  /** {name} → preset ({model, train}) */
  preset: 'preset',
  /**
   * {preset} → {params, bytes}, or an error naming the invalid field or the device limit it
   * exceeds: validates without building; `bytes` estimates the memory training it needs.
   */
  describe: 'describe',
  /**
   * {preset} → {params, preset, half}: a fresh model and optimizer (its task follows the data);
   * `half`: its matmuls run in f16 (mixed precision asked for, on an adapter with shader-f16).
   */
  configure: 'configure',
  /** {train} → {}: a new schedule (steps, lr, batch, ...) for the current run, model kept. */
  schedule: 'schedule',
  /** {backend: 'cpu' | 'wgpu'} → {backend}: the run, if any, moves over. */
  useBackend: 'useBackend',
  /** {} → {cpu?, wgpu?} ms per step of the configured model on each backend. */
  timeBackends: 'timeBackends',
  /**
   * {known: {key: tuning}} → {key, matmul, attention?, norm?, remembered}, each kernel's part
   * {shape, timings: [{variant, ms, error}], chosen}: the kernel variants for the configured
   * model on WebGPU, from `known` at its shapes or else each variant timed now; the fastest that
   * computes right is used from now on.
   */
  tuneKernels: 'tuneKernels',
  /**
   * {name, vocab, batch, reps, matmul: [n], stepReps} → {kernels, peak_gflops, matmul, step_ms}:
   * the WGSL kernels against Burn's ops on WebGPU at the shapes of preset `name`, and (stepReps
   * > 0) its training step with the kernels off and on (the kernel benchmark).
   */
  benchKernels: 'benchKernels',
  /**
   * {} → {valLoss, report}: the validation loss of the current model on the current data, and a
   * classifier's {classes, examples, accuracy, macro_f1, confusion[true][predicted]} (else null).
   */
  evaluate: 'evaluate',
  /** {text} → [[class, probability], ...], most likely first: a classifier's prediction. */
  classify: 'classify',
  /**
   * {checkEvery, sampleTokens} → {}: trains to the configured max_steps, pushing `progress`,
   * `sample` (`sampleTokens` tokens after each evaluation; 0: none) and `state`; on WebGPU, every
   * `checkEvery` steps (0: never) the model's loss and logits are compared with the CPU's, and a
   * disagreement stops the run with `untrusted`.
   */
  train: 'train',
  /**
   * {} → {loss: [gpu, cpu], grad_norm: [gpu, cpu], difference, agree}: one forward and backward
   * pass of a fixed model on WebGPU and on the CPU, compared (a driver or shader bug disagrees).
   */
  verifyGpu: 'verifyGpu',
  pause: 'pause',
  resume: 'resume',
  stop: 'stop',
  /**
   * {prompt, sampling} → {text}, pushing `token` events; `stopGenerate` ends it early. A chat
   * model's answer ends at its end marker unless `sampling.stop` says otherwise.
   */
  generate: 'generate',
  stopGenerate: 'stopGenerate',
  /**
   * {text} → {tokens, log_prob, perplexity, per_token: [[token, logProb | null], ...]}: how
   * likely the model finds the text, token by token (the first token has no context).
   */
  score: 'score',
  /**
   * {text, k} → [{index, guesses: [[token, probability], ...]}, ...]: an encoder's k best
   * guesses for each [MASK] in the text, most likely first.
   */
  fill: 'fill',
  /** {prompt, k} → [[token, probability], ...]: the k most likely next tokens, most likely first. */
  nextTokens: 'nextTokens',
  /**
   * {prompt, maxTokens} → {tokens, weights: [layer][head][query][key]}: where each of the prompt's
   * last maxTokens tokens attends; every row sums to 1.
   */
  attention: 'attention',
  /** {} → {tokens, points: [[x, y], ...], explained: [share, share]}: the embeddings' PCA. */
  embeddings: 'embeddings',
  /** {} → {meta: string, weights: Uint8Array, optimizer?: Uint8Array} */
  save: 'save',
  /** {meta: Uint8Array, weights: Uint8Array, optimizer?: Uint8Array} → {step, preset, vocabSize, params} */
  load: 'load',
  /**
   * {} → {weights: Uint8Array, config: string, tokenizer: string, tokenizerConfig: string}:
   * transformers' files, GPT-2's or (an encoder) BERT's (LoRA adapters merged in).
   */
  exportTransformers: 'exportTransformers',
  /** {} → {weights: Uint8Array, config: string}: the LoRA adapters alone, as PEFT's files. */
  exportAdapters: 'exportAdapters',
  /**
   * {weights: File, config: string, tokenizer: string} → like `load`: GPT-2's or BERT's
   * transformers files as a new run at step 0; the worker streams `weights` into the module.
   */
  importTransformers: 'importTransformers',
  /** {} → never: panics inside the wasm module, so tests can prove the page recovers. */
  debugPanic: 'debugPanic',
  /** {} → {devices}: destroys the module's GPU devices, as a driver reset would (tests). */
  debugLoseDevice: 'debugLoseDevice',
  /** {factor} → {}: the fused attention kernel's output × factor from now on (tests; 1 undoes). */
  debugCorruptKernel: 'debugCorruptKernel',
});

/** Messages, worker → page. */
export const Event = Object.freeze({
  /** {id, result} */
  reply: 'reply',
  /** {id, code, message}: code is the request type that failed (or 'train', 'panic'). */
  error: 'error',
  /** {step, maxSteps, loss, valLoss?, report?, maskedAccuracy?, lr, tokensPerSec, stepMs, eta (seconds)} */
  progress: 'progress',
  /** {step, text}: a sample from the model at an evaluation. */
  sample: 'sample',
  /** {text}: the next piece of a generation. */
  token: 'token',
  /** {state: 'idle' | 'running' | 'paused'} */
  state: 'state',
  /**
   * {message}: the wasm module panicked (a bug) and can do nothing more; the page starts a new
   * worker. The request that was running also fails, with an `error`.
   */
  panic: 'panic',
  /** {message}: the GPU device was lost; like `panic`, the page starts a new worker. */
  deviceLost: 'deviceLost',
  /** {step, check}: the run's check against the CPU failed (see `train`); the run stopped. */
  untrusted: 'untrusted',
});

/**
 * Calls the worker: `call(type, payload)` returns a promise of the reply's result.
 * `call.abandon(message)` fails every call still waiting, when the worker is gone.
 */
export function client(worker, onEvent) {
  let next = 0;
  const pending = new Map();
  worker.addEventListener('message', ({ data }) => {
    const waiting = pending.get(data.id);
    if (data.type === Event.reply && waiting) {
      pending.delete(data.id);
      waiting.resolve(data.result);
    } else if (data.type === Event.error && waiting) {
      pending.delete(data.id);
      waiting.reject(Object.assign(new Error(data.message), { code: data.code }));
    } else {
      onEvent(data);
    }
  });
  const call = (type, payload = {}, transfer = []) =>
    new Promise((resolve, reject) => {
      const id = ++next;
      pending.set(id, { resolve, reject });
      worker.postMessage({ type, id, ...payload }, transfer);
    });
  call.abandon = (message) => {
    for (const waiting of pending.values()) waiting.reject(new Error(message));
    pending.clear();
  };
  return call;
}
