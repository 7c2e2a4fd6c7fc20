// The page end to end in Debian's Chromium with WebGPU on SwiftShader. Models are micro-sized:
// SwiftShader emulates the GPU on the CPU.
import { customText, downloads, expect, generate, kiln, open, setField, test, train } from './helpers.js';

test('the adapter is WebGPU on SwiftShader; the kernel variants are chosen by timing on it', async ({ page }) => {
  await open(page, '?backend=wgpu', { tuned: false });
  await expect(page.locator('#adapter')).toContainText(/swiftshader/i);
  expect(await kiln(page, 'adapter.name')).toMatch(/swiftshader/i);
  expect(await kiln(page, 'adapter.software')).toBe(true);
  expect(await kiln(page, 'backend')).toBe('wgpu');
  await expect(page.locator('#fallback-notice')).toBeHidden();
  // The kernels for this adapter: each matmul variant, attention tile and norm row sum (SwiftShader
  // has subgroups) timed at the model's shapes and checked against the plain ops, the fastest
  // used; a reload reuses the choice.
  expect(await page.evaluate(async () => (await navigator.gpu.requestAdapter()).features.has('subgroups'))).toBe(true);
  const tuning = await kiln(page, 'kernels');
  expect(tuning.matmul.timings.map((t) => t.variant)).toEqual(['burn', 'registers-32', 'staged-64']);
  expect(tuning.attention.timings.map((t) => t.variant)).toEqual([64, 32, 16]);
  expect(tuning.norm.timings.map((t) => t.variant)).toEqual(['workgroup-tree', 'subgroups']);
  for (const kernel of [tuning.matmul, tuning.attention, tuning.norm]) {
    for (const t of kernel.timings) expect(t.error).toBeLessThan(1e-5);
    expect(kernel.chosen).toBe(kernel.timings.reduce((a, b) => (b.ms < a.ms ? b : a)).variant);
    console.log(`SwiftShader at ${kernel.shape.join('×')}: ${kernel.timings.map((t) => `${t.variant} ${t.ms.toFixed(1)} ms`).join(', ')}`);
  }
  await expect(page.locator('#kernel-choice')).toContainText(new RegExp(
    `^matmul: ${tuning.matmul.chosen} chosen, .*; attention: ${tuning.attention.chosen}-key tiles chosen, .*; ` +
    `norms: ${tuning.norm.chosen} sums chosen, .*\\(timed just now\\)$`));
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  expect(await kiln(page, 'kernels')).toMatchObject({ key: tuning.key, remembered: true });
  expect(await kiln(page, 'kernels.matmul.chosen')).toBe(tuning.matmul.chosen);
  await expect(page.locator('#kernel-choice')).toContainText('(remembered for this adapter)');
  // A remembered choice that cannot be read is timed again, not an error.
  const key = `kiln.kernels:${await kiln(page, 'adapter.name')}`;
  const stored = await page.evaluate((k) => localStorage.getItem(k), key);
  await page.evaluate((k) => localStorage.setItem(k, '{not json'), key);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  expect(await kiln(page, 'kernels.remembered')).toBe(false);
  await page.evaluate(([k, v]) => localStorage.setItem(k, v), [key, stored]);
  await expect(page.locator('#params')).toHaveText(/^0\.028M parameters; training needs about \d+ MB$/);
  await setField(page, 'model.n_head', 3);
  await expect(page.locator('#config-error')).toContainText('n_head');
  await setField(page, 'model.n_head', 4);
  await expect(page.locator('#config-error')).toHaveText('');
  await setField(page, 'train.freeze_blocks', 3);
  await expect(page.locator('#config-error')).toContainText('freeze_blocks is 3 but the model has only 2 blocks');
  await setField(page, 'train.freeze_blocks', 0);
  await expect(page.locator('#config-error')).toHaveText('');
  await expect(page.locator('#params')).toHaveText(/^0\.028M parameters; training needs about \d+ MB$/);
  // A model too large for the device is refused before anything is allocated: required vs available.
  await setField(page, 'model.n_embd', 65536);
  await expect(page.locator('#config-error')).toContainText(
    /an MLP weight needs 68719 MB in one buffer, and the device allows at most \d+ MB \(maxStorageBufferBindingSize/);
  await page.click('#train');
  await expect(page.locator('#error-text')).toContainText('an MLP weight needs 68719 MB');
  // 8000 × 32 positions × ~644 floats kept per block: layers enough to pass the browser's memory.
  const gb = await page.evaluate(() => navigator.deviceMemory);
  await setField(page, 'model.n_embd', 32);
  await setField(page, 'model.n_layer', Math.ceil(gb * 2 ** 30 / (8000 * 32 * 644 * 4)) + 2);
  await setField(page, 'train.batch_size', 8000);
  await expect(page.locator('#config-error')).toContainText(
    new RegExp(`needs about \\d+ MB and the device has ${Math.round(gb * 2 ** 30 / 1e6)} MB \\(navigator\\.deviceMemory\\)`));
  await setField(page, 'model.n_layer', 2);
  await setField(page, 'train.batch_size', 8);
  // A model of another width is another shape: its matmul is timed when it first trains.
  await setField(page, 'model.n_embd', 48);
  await train(page, 2);
  expect(await kiln(page, 'kernels.matmul.shape')).toEqual([tuning.matmul.shape[0], 48, 192]);
  expect(await kiln(page, 'kernels.remembered')).toBe(false);
  const remembered = await page.evaluate((k) => JSON.parse(localStorage.getItem(k)), key);
  expect(Object.keys(remembered).sort()).toEqual([tuning.key, await kiln(page, 'kernels.key')].sort());
});

test('training tiny on WebGPU lowers the loss, draws the charts, stays responsive, and generates', async ({ page }) => {
  await open(page);
  await setField(page, 'train.eval_steps', 2);
  await setField(page, 'train.max_steps', 24);
  await setField(page, 'train.eval_interval', 12);
  await page.fill('#sample-tokens', '12');
  await page.click('#train');
  // A click while training is handled: pause stops the steps, resume continues them.
  await expect.poll(() => kiln(page, 'step'), { timeout: 120_000 }).toBeGreaterThanOrEqual(3);
  await page.click('#pause');
  await expect(page.locator('#status')).toHaveText('Paused');
  const pausedAt = await kiln(page, 'step');
  await page.waitForTimeout(3000);
  expect(await kiln(page, 'step')).toBeLessThanOrEqual(pausedAt + 1); // at most the step in flight
  const progress = await page.locator('#progress').evaluate((p) => p.value);
  expect(progress).toBeGreaterThan(0);
  await page.click('#resume');
  await expect(page.locator('#eta')).toHaveText('done', { timeout: 5 * 60_000 });

  const history = await kiln(page, 'history');
  expect(history.map((p) => p.step)).toEqual([...Array(24).keys()].map((i) => i + 1));
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const first = mean(history.slice(0, 3).map((p) => p.loss));
  const last = mean(history.slice(-3).map((p) => p.loss));
  expect(last).toBeLessThan(first - 0.3);
  const vals = history.filter((p) => p.valLoss != null).map((p) => p.valLoss);
  expect(vals).toHaveLength(2);
  expect(vals[1]).toBeLessThan(vals[0]);
  expect(await kiln(page, 'charts.loss.points')).toBe(24);
  expect(await page.locator('#progress').evaluate((p) => p.value)).toBe(24);
  await expect(page.locator('#sample')).toContainText('step 24');
  // The sample is as long as the field asks: 12 tokens, one character each.
  const [, ...written] = (await page.locator('#sample').textContent()).split('\n');
  expect(written.join('\n')).toHaveLength(12);

  // Generation streams text, and the same seed gives the same text.
  const a = await generate(page, 7);
  expect(a.length).toBeGreaterThanOrEqual(20);
  expect(await kiln(page, 'tokenEvents')).toBeGreaterThanOrEqual(20); // one event per new piece
  await expect(page.locator('#output')).toHaveText(a);
  expect(await generate(page, 7)).toBe(a);
  expect(await generate(page, 8)).not.toBe(a);
  await page.fill('#prompt', 'To be, or not to be');
  await page.click('#score-prompt');
  await expect(page.locator('#score')).toContainText(/18 tokens, log-probability -\d+\.\d\d, perplexity \d+\.\d\d/);
});

// Saving, loading and files do not depend on the backend: these tests use the CPU, which is
// quicker than an emulated GPU (WebGPU's save and load: the device-loss test in reliability.spec.js).
test('a checkpoint saved in the browser survives a reload: same text, and training continues', async ({ page }) => {
  await open(page, '?backend=cpu');
  await train(page, 6);
  await page.fill('#ckpt-name', 'reload-test');
  await page.click('#save-browser');
  await expect(page.locator('#ckpt-status')).toHaveText('Saved "reload-test" in this browser at step 6.');
  const before = await generate(page, 3);
  const losses = (await kiln(page, 'history')).map((p) => p.loss);

  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  const row = page.locator('#saved tr[data-name="reload-test"]');
  await expect(row).toContainText('reload-test6'); // name, then the step
  await row.locator('button.load').click();
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded "reload-test" at step 6.');
  // The chart history came back with the model.
  expect(await kiln(page, 'charts.loss.points')).toBe(6);
  expect((await kiln(page, 'history')).map((p) => p.loss)).toEqual(losses);
  expect(await generate(page, 3)).toBe(before);
  await train(page, 8);
  expect((await kiln(page, 'history')).map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
});

test('autosave keeps the run: after a reload it resumes from the last autosave', async ({ page }) => {
  await open(page, '?backend=cpu');
  await page.fill('#ckpt-name', 'auto');
  await page.fill('#autosave', '3');
  await train(page, 7);
  // The save asked for at step 6 runs between steps: it holds step 6, or 7 if that one was
  // already under way. On a loaded machine the page may handle step 3's progress late, so that
  // its save holds step 6 and the one due at step 6 (queued behind it) step 7: the last save
  // written is the one that survives, so wait for the queue to empty before reading it.
  await expect.poll(() => kiln(page, 'autosave')).toBeNull();
  const status = page.locator('#ckpt-status');
  await expect(status).toHaveText(/^Saved "auto" in this browser at step [67]\.$/);
  const saved = Number((await status.textContent()).match(/step (\d+)/)[1]);
  const losses = (await kiln(page, 'history')).map((p) => p.loss).slice(0, saved);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  const row = page.locator('#saved tr[data-name="auto"]');
  await expect(row).toContainText(`auto${saved}`);
  await row.locator('button.load').click();
  await expect(page.locator('#ckpt-status')).toHaveText(`Loaded "auto" at step ${saved}.`);
  expect((await kiln(page, 'history')).map((p) => p.loss)).toEqual(losses);
  await train(page, 9);
  expect((await kiln(page, 'history')).map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('a save that dies half-way leaves the previous checkpoint; delete removes one', async ({ page }) => {
  await open(page, '?backend=cpu');
  await page.fill('#ckpt-name', 'atomic');
  await page.fill('#autosave', '3');
  await train(page, 3); // autosaved at step 3
  await expect(page.locator('#ckpt-status')).toHaveText('Saved "atomic" in this browser at step 3.');
  await page.fill('#autosave', '0');
  await train(page, 5);
  // The next save fails on its third file, after two were written.
  await page.evaluate(() => {
    const close = FileSystemWritableFileStream.prototype.close;
    let calls = 0;
    FileSystemWritableFileStream.prototype.close = function () {
      calls += 1;
      return calls === 3 ? Promise.reject(new Error('disk full (simulated)')) : close.call(this);
    };
  });
  await page.click('#save-browser');
  await expect(page.locator('#error-text')).toHaveText('disk full (simulated)');
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await page.locator('#saved tr[data-name="atomic"] button.load').click();
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded "atomic" at step 3.');
  await page.locator('#saved tr[data-name="atomic"] button.delete').click();
  await expect(page.locator('#saved tr[data-name="atomic"]')).toHaveCount(0);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await expect(page.locator('#saved tr[data-name="atomic"]')).toHaveCount(0);
});

test('a downloaded checkpoint uploads back and resumes', async ({ page }) => {
  await open(page, '?backend=cpu');
  await train(page, 4);
  await page.fill('#ckpt-name', 'dl');
  const files = await downloads(page, '#download', 3);
  const names = files.map((f) => f.name).sort();
  expect(names).toEqual(['dl-step4.json', 'dl-step4.optimizer.safetensors', 'dl-step4.safetensors']);
  const before = await generate(page, 9);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await page.setInputFiles('#upload', files);
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded the uploaded checkpoint at step 4.');
  expect(await generate(page, 9)).toBe(before);
  // Only the weights: a clear message, and the loaded run is untouched.
  await page.setInputFiles('#upload', { name: 'x.safetensors', mimeType: 'application/octet-stream', buffer: files[0].buffer });
  await expect(page.locator('#error-text')).toContainText('.json');
});

test('a model downloaded for transformers uploads back as GPT-2 files: the same text', async ({ page }) => {
  await open(page, '?backend=cpu');
  await train(page, 4);
  const uploads = await downloads(page, '#download-transformers', 4);
  expect(uploads.map((f) => f.name).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  // The character vocabulary is Hugging Face's format: a merge-free BPE joined by a Fuse decoder.
  const tokenizer = JSON.parse(uploads.find((f) => f.name === 'tokenizer.json').buffer.toString());
  expect([tokenizer.model.type, tokenizer.model.merges, tokenizer.decoder.type]).toEqual(['BPE', [], 'Fuse']);
  const config = JSON.parse(uploads.find((f) => f.name === 'config.json').buffer.toString());
  expect(config.model_type).toBe('gpt2');
  const before = await generate(page, 5);
  await page.reload();
  await expect(page.locator('body')).toHaveAttribute('data-ready', 'true');
  await page.setInputFiles('#upload', uploads);
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded the GPT-2 model at step 0.');
  expect(await generate(page, 5)).toBe(before);
  // Without its weights: a clear message.
  await page.setInputFiles('#upload', uploads.filter((f) => f.name !== 'model.safetensors'));
  await expect(page.locator('#error-text')).toContainText('model.safetensors');
});

test('a custom .txt trains; empty and binary files show an error and change nothing', async ({ page }) => {
  await open(page, '?backend=cpu');
  const stats = page.locator('#corpus-stats');
  await page.setInputFiles('#file', { name: 'empty.txt', mimeType: 'text/plain', buffer: Buffer.alloc(0) });
  await expect(page.locator('#data-error')).toBeVisible();
  await expect(page.locator('#data-error')).toContainText('empty');
  await expect(stats).toContainText('shakespeare.txt');

  const binary = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0, 0x0d, 0xff, 0xfe, 0, 1, 2, 3]);
  await page.setInputFiles('#file', { name: 'image.txt', mimeType: 'text/plain', buffer: binary });
  await expect(page.locator('#data-error')).toContainText('image.txt');
  await expect(stats).toContainText('shakespeare.txt');

  const text = customText();
  await page.setInputFiles('#file', { name: 'pottery.txt', mimeType: 'text/plain', buffer: Buffer.from(text) });
  await expect(stats).toContainText('pottery.txt');
  await expect(page.locator('#data-error')).toBeHidden();
  await expect(page.locator('#tok-stats')).toHaveText(`${new Set(text).size} tokens`);
  await train(page, 5);
  expect((await kiln(page, 'history')).map((p) => p.step)).toEqual([1, 2, 3, 4, 5]);
  expect(await generate(page, 1, 30)).toMatch(/^[a-z .\n]+$/);
  // A byte-level BPE trained in the page, on this text.
  await page.selectOption('#tok-kind', 'bpe');
  await page.fill('#bpe-vocab', '300');
  await page.click('#build-tok');
  await expect(page.locator('#tok-stats')).toHaveText(/^(2[6-9]\d|300) tokens$/);
  await train(page, 3);
});

test('finetuning on characters the model never saw: named, or mapped to one it knows', async ({ page }) => {
  await open(page, '?backend=cpu');
  await train(page, 3);
  await page.check('#finetune');
  const accented = { name: 'accents.txt', mimeType: 'text/plain', buffer: Buffer.from('to be é or not to be\n'.repeat(400)) };
  await page.setInputFiles('#file', accented);
  await expect(page.locator('#data-error')).toContainText("'é'");
  await page.fill('#unknown-char', ' ');
  await page.setInputFiles('#file', accented);
  await expect(page.locator('#corpus-stats')).toContainText('finetuning the current model');
  await train(page, 3);
  expect((await kiln(page, 'history')).map((p) => p.step)).toEqual([1, 2, 3]);
});

test('the fused WGSL kernels train on WebGPU like the plain ops: the same losses', async ({ page }) => {
  await open(page);
  await expect(page.locator('[data-key="model.kernels"]')).toBeChecked();
  await setField(page, 'model.block_size', 16);
  await setField(page, 'train.batch_size', 2);
  await train(page, 6);
  const fused = (await kiln(page, 'history')).map((p) => p.loss);
  await page.locator('[data-key="model.kernels"]').uncheck();
  expect(await kiln(page, 'preset.model.kernels')).toBe(false);
  await train(page, 6);
  const plain = (await kiln(page, 'history')).map((p) => p.loss);
  expect(plain).toHaveLength(6);
  expect(fused[5]).toBeLessThan(fused[0]);
  fused.forEach((loss, i) => expect(Math.abs(loss - plain[i])).toBeLessThan(2e-3 * plain[i]));
});

test('the CPU backend can be forced and trains; WebGPU chosen later is checked first', async ({ page }) => {
  await open(page, '?backend=cpu');
  expect(await kiln(page, 'backend')).toBe('cpu');
  // A page on the CPU does not check the GPU until WebGPU is chosen.
  expect(await kiln(page, 'gpuCheck')).toBeUndefined();
  // In wasm32 the CPU backend has 4 GiB of address space, whatever the machine has.
  await setField(page, 'train.batch_size', 40000);
  await expect(page.locator('#config-error')).toContainText('and the device has 4295 MB (wasm32\'s address space)');
  await setField(page, 'train.batch_size', 8);
  await train(page, 10);
  const history = await kiln(page, 'history');
  expect(history[9].loss).toBeLessThan(history[0].loss);
  await page.selectOption('#backend', 'wgpu');
  await expect.poll(() => kiln(page, 'backend')).toBe('wgpu');
  expect(await kiln(page, 'gpuCheck.agree')).toBe(true);
  await expect(page.locator('#kernel-choice')).toContainText(/^matmul: /);
});

test('on a software adapter the page times both backends and uses the faster', async ({ page }) => {
  await open(page, '');
  const timing = page.locator('#backend-timing');
  await expect(timing).toContainText('using', { timeout: 180_000 });
  const ms = await kiln(page, 'timings.backends');
  expect(ms.wgpu).toBeGreaterThan(0);
  expect(ms.cpu).toBeGreaterThan(0);
  expect(await kiln(page, 'backend')).toBe(ms.cpu < ms.wgpu ? 'cpu' : 'wgpu');
  await expect(timing).toContainText(`WebGPU ${ms.wgpu.toFixed(0)} ms/step, CPU ${ms.cpu.toFixed(0)} ms/step`);
});

test('the demo pretrains on Shakespeare, finetunes on Milton, and Milton\'s loss falls', async ({ page }) => {
  await open(page, '?backend=cpu');
  await setField(page, 'train.max_steps', 80);
  await setField(page, 'train.eval_interval', 0);
  await page.click('#demo-milton');
  await expect(page.locator('#demo-result')).toContainText('after', { timeout: 5 * 60_000 });
  const { before, after } = await kiln(page, 'demo');
  expect(after).toBeLessThan(before - 0.05);
  await expect(page.locator('#demo-before')).toContainText('Before finetuning:\n');
  await expect(page.locator('#demo-after')).toContainText('After finetuning on Milton:\n');
  await expect(page.locator('#corpus-stats')).toContainText('milton.txt');
  expect((await kiln(page, 'history')).map((p) => p.step).at(-1)).toBe(80);
});
