// Kiln's GPT written in TF.js, for the peer benchmark (bench/peers/browser.js opens tfjs.html,
// which calls runTfjs). As nanoGPT with bias=False: learned positions, pre-LayerNorm blocks,
// causal self-attention, a tanh-GELU MLP, a final LayerNorm and an LM head tied to the token
// embedding; AdamW (decay on matrices only) with global grad-norm clipping.
// Checked to learn: on wasm, 30 steps from a fresh model took the loss from 4.32 (≈ ln 76 = 4.33)
// to 2.82; Kiln's CPU run beside it went 4.37 → 2.93 (`node bench/peers/browser.js --rounds 1
// --steps 27 --only kiln-cpu,tfjs-wasm`: 3 warm-up + 27 steps, the table's loss column).
const tf = globalThis.tf; // the UMD build, loaded by tfjs.html

/** The model's variables, a causal mask and the list that training updates. */
function createGPT(config, seed = 1337) {
  const { vocab: V, n_embd: C, n_layer: L, block_size: T } = config;
  const vars = [];
  const param = (tensor) => {
    const v = tf.variable(tensor);
    vars.push(v);
    return v;
  };
  let s = seed;
  const normal = (shape, std = 0.02) => param(tf.randomNormal(shape, 0, std, 'float32', s++));
  // nanoGPT scales the residual projections' init by 1/√(2·n_layer).
  const projStd = 0.02 / Math.sqrt(2 * L);
  const block = () => ({
    ln1: param(tf.ones([C])),
    attn: normal([C, 3 * C]),
    attnProj: normal([C, C], projStd),
    ln2: param(tf.ones([C])),
    fc: normal([C, 4 * C]),
    proj: normal([4 * C, C], projStd),
  });
  const model = { config, vars, wte: normal([V, C]), wpe: normal([T, C]) };
  model.blocks = Array.from({ length: L }, block);
  model.lnF = param(tf.ones([C]));
  // -1e9 above the diagonal: a position attends to itself and earlier ones only.
  model.mask = tf.tidy(() => tf.sub(1, tf.linalg.bandPart(tf.ones([T, T]), -1, 0)).mul(-1e9));
  return model;
}

/** LayerNorm without a bias (bias=False). */
function layerNorm(x, weight) {
  const mean = x.mean(-1, true);
  const centered = x.sub(mean);
  return centered.mul(centered.square().mean(-1, true).add(1e-5).rsqrt()).mul(weight);
}

/** x [..., in] · w [in, out]. */
const linear = (x, w) => tf.matMul(x.reshape([-1, w.shape[0]]), w).reshape([...x.shape.slice(0, -1), w.shape[1]]);

/** GPT-2's GELU, the tanh approximation. */
const gelu = (x) => x.mul(0.5).mul(tf.tanh(x.add(x.mul(x).mul(x).mul(0.044715)).mul(Math.sqrt(2 / Math.PI))).add(1));

function attention(model, block, x) {
  const [B, T, C] = x.shape;
  const H = model.config.n_head;
  const D = C / H;
  const heads = (t) => t.reshape([B, T, H, D]).transpose([0, 2, 1, 3]); // [B, H, T, D]
  const [q, k, v] = tf.split(linear(x, block.attn), 3, -1).map(heads);
  const att = tf.matMul(q, k, false, true).mul(1 / Math.sqrt(D)).add(model.mask.slice([0, 0], [T, T]));
  const y = tf.matMul(tf.softmax(att), v).transpose([0, 2, 1, 3]).reshape([B, T, C]);
  return linear(y, block.attnProj);
}

/** Logits [B·T, vocab] for token ids [B, T]. */
function forward(model, idx) {
  const [B, T] = idx.shape;
  const { vocab: V, n_embd: C } = model.config;
  // The token embedding as a one-hot matmul: the wasm backend has no kernel for gather's gradient.
  const tok = tf.matMul(tf.oneHot(idx.flatten(), V).toFloat(), model.wte).reshape([B, T, C]);
  let x = tok.add(model.wpe.slice([0, 0], [T, C]));
  for (const block of model.blocks) {
    x = x.add(attention(model, block, layerNorm(x, block.ln1)));
    x = x.add(linear(gelu(linear(layerNorm(x, block.ln2), block.fc)), block.proj));
  }
  return tf.matMul(layerNorm(x, model.lnF).reshape([B * T, C]), model.wte, false, true);
}

/** Mean cross-entropy over every position. */
const lossOf = (model, x, y) =>
  tf.losses.softmaxCrossEntropy(tf.oneHot(y.flatten(), model.config.vocab), forward(model, x));

/** AdamW's state: the first and second moments of each variable. */
function createAdamW(model, hp) {
  const zeros = () => model.vars.map((v) => tf.variable(tf.zerosLike(v), false));
  return { ...hp, t: 0, m: zeros(), v: zeros() };
}

/** Clips the gradients to a global norm of `opt.grad_clip`, then one AdamW update. */
function update(model, opt, grads) {
  const norm = tf.sqrt(tf.addN(grads.map((g) => g.square().sum())));
  const scale = tf.minimum(1, tf.div(opt.grad_clip, norm.add(1e-6)));
  opt.t += 1;
  const c1 = 1 - opt.beta1 ** opt.t;
  const c2 = 1 - opt.beta2 ** opt.t;
  model.vars.forEach((p, i) => {
    const g = grads[i].mul(scale);
    const m = opt.m[i].mul(opt.beta1).add(g.mul(1 - opt.beta1));
    const v = opt.v[i].mul(opt.beta2).add(g.square().mul(1 - opt.beta2));
    opt.m[i].assign(m);
    opt.v[i].assign(v);
    const decayed = p.rank >= 2 ? p.mul(1 - opt.lr * opt.weight_decay) : p;
    p.assign(decayed.sub(m.div(c1).div(v.div(c2).sqrt().add(1e-8)).mul(opt.lr)));
  });
}

/** Random windows of the corpus: x = tokens[i..i+T], y = tokens[i+1..i+T+1]. */
function batch(tokens, B, T) {
  const x = new Int32Array(B * T);
  const y = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const i = Math.floor(Math.random() * (tokens.length - T - 1));
    x.set(tokens.subarray(i, i + T), b * T);
    y.set(tokens.subarray(i + 1, i + T + 1), b * T);
  }
  return [tf.tensor2d(x, [B, T], 'int32'), tf.tensor2d(y, [B, T], 'int32')];
}

/** One training step; returns the loss (a tensor the caller reads and disposes). */
function trainStep(model, opt, tokens, batchSize) {
  return tf.tidy(() => {
    const [x, y] = batch(tokens, batchSize, model.config.block_size);
    const { value, grads } = tf.variableGrads(() => lossOf(model, x, y), model.vars);
    update(model, opt, model.vars.map((v) => grads[v.name]));
    return value;
  });
}

/**
 * Trains a fresh model on `backend` for `warmup + steps` steps, each read back before the next
 * (so GPU work is timed): the steady steps' ms, every step's loss, and checks for the caller.
 */
export async function runTfjs({ backend, steps, warmup, config, train }) {
  if (backend === 'wasm') tf.wasm.setWasmPaths(new URL('tfjs-backend-wasm/', location.href).href);
  if (!(await tf.setBackend(backend))) throw new Error(`TF.js could not start its ${backend} backend`);
  const text = await (await fetch('data/shakespeare.txt')).text();
  const chars = [...new Set(text)].sort();
  if (chars.length !== config.vocab) throw new Error(`the corpus has ${chars.length} characters, not ${config.vocab}`);
  const index = new Map(chars.map((c, i) => [c, i]));
  const tokens = Int32Array.from(text, (c) => index.get(c));
  const model = createGPT(config);
  const opt = createAdamW(model, train);
  const stepsMs = [];
  const losses = [];
  const tensors = [];
  for (let i = 0; i < warmup + steps; i++) {
    const start = performance.now();
    const loss = trainStep(model, opt, tokens, train.batch_size);
    losses.push((await loss.data())[0]);
    stepsMs.push(performance.now() - start);
    loss.dispose();
    tensors.push(tf.memory().numTensors);
  }
  const env = tf.env();
  return {
    backend: tf.getBackend(),
    params: model.vars.reduce((n, v) => n + v.size, 0),
    stepsMs: stepsMs.slice(warmup),
    losses,
    tensors,
    wasm: backend === 'wasm'
      ? { simd: await env.getAsync('WASM_HAS_SIMD_SUPPORT'), threads: await env.getAsync('WASM_HAS_MULTITHREAD_SUPPORT') }
      : undefined,
  };
}
