// A model of GPT-2's vocabulary in the page: GPT-2's real 50,257-token tokenizer with random
// weights at a small width, as GPT-2 files (`cargo xtask test` writes them with `kiln init` and
// `kiln export` into tests/.gpt2-shaped/ before these tests run), and GPT-2 small's own shape.
import { existsSync, readFileSync } from 'node:fs';
import { expect, file, generate, kiln, open, safetensorsHeader, setField, test, train } from './helpers.js';

const DIR = 'tests/.gpt2-shaped/hf';
const upload = (dir) => ['config.json', 'model.safetensors', 'tokenizer.json']
  .map((name) => file(name, readFileSync(`${dir}/${name}`)));

// On WebGPU too: SwiftShader, with Kiln's kernels on, runs the LoRA step through the same
// embedding and chunked loss as an adapter with small bindings.
for (const backend of ['cpu', 'wgpu']) test(`a GPT-2-shaped model loads with GPT-2's tokenizer, generates, LoRA-finetunes and exports its adapters (${backend})`, async ({ page }) => {
  expect(existsSync(DIR), `${DIR}: run the page tests through cargo xtask test`).toBe(true);
  // The page hands the weights file to the worker, which streams it into the module: reading
  // it whole on the page would be a second full copy (500 MB for GPT-2 small).
  await page.addInitScript(() => {
    for (const method of ['arrayBuffer', 'bytes', 'text']) {
      const read = Blob.prototype[method];
      Blob.prototype[method] = function (...args) {
        if (this.name === 'model.safetensors') throw new Error(`the page read model.safetensors whole (${method})`);
        return read.apply(this, args);
      };
    }
  });
  await open(page, `?backend=${backend}`);
  await page.setInputFiles('#upload', upload(DIR));
  await expect(page.locator('#ckpt-status')).toHaveText('Loaded the GPT-2 model at step 0.');
  await expect(page.locator('#tok-stats')).toHaveText('50257 tokens (from the checkpoint)');
  // 50,257 × 64 tied embedding, 64 positions, two blocks of 64 with biases.
  await expect(page.locator('#params')).toHaveText('3.321M parameters');
  expect((await generate(page, 1, 8)).length).toBeGreaterThan(0);

  await page.check('#finetune');
  await page.check('#lora');
  await page.fill('#lora-targets', 'q,v');
  await page.setInputFiles('#file', file('more.txt', 'To be, or not to be, that is the question.\n'.repeat(80)));
  await expect(page.locator('#corpus-stats')).toContainText('finetuning the current model');
  await setField(page, 'train.batch_size', 2);
  // SwiftShader takes seconds a step: one shows the step runs there.
  await train(page, backend === 'cpu' ? 3 : 1);
  // Random weights predict about uniformly over GPT-2's vocabulary: ln 50257 = 10.8.
  for (const { loss } of await kiln(page, 'history')) expect(Math.abs(loss - 10.8)).toBeLessThan(1.5);

  const files = [];
  page.on('download', (d) => files.push(d));
  await page.click('#download-adapters');
  await expect.poll(() => files.length).toBe(2);
  const adapter = files.find((d) => d.suggestedFilename() === 'adapter_model.safetensors');
  const header = safetensorsHeader(readFileSync(await adapter.path()));
  // q and v of c_attn as one PEFT adapter of rank 2 × 4 over the whole [64, 192] weight.
  expect(header['base_model.model.transformer.h.1.attn.c_attn.lora_A.weight'].shape).toEqual([8, 64]);
  expect(header['base_model.model.transformer.h.1.attn.c_attn.lora_B.weight'].shape).toEqual([192, 8]);
});

test('a model too large to train in full in wasm opens as a LoRA run at batch 1, generates and trains', async ({ page }) => {
  // 2,048 positions: at the import's batch of 8 the logits alone are 6.6 GB, over wasm32's 4 GiB.
  await open(page, '?backend=cpu');
  await page.setInputFiles('#upload', upload(`${DIR}-long`));
  const status = page.locator('#ckpt-status');
  await expect(status).toContainText('Loaded the GPT-2 model at step 0. Training all its weights at batch size 8 needs about');
  await expect(status).toContainText('it trains LoRA adapters (q, v; rank 8) at batch size 1 instead');
  expect(await kiln(page, 'preset.train.batch_size')).toBe(1);
  expect(await kiln(page, 'preset.model.lora')).toEqual({ rank: 8, alpha: 16, targets: ['q', 'v'] });
  expect((await generate(page, 1, 4)).length).toBeGreaterThan(0);
  await train(page, 1);
  expect(Math.abs((await kiln(page, 'history'))[0].loss - 10.8)).toBeLessThan(1.5);
});


test('GPT-2 small\'s shape (124.7M parameters, a 498 MB file) streams in, opens as a LoRA run and generates', async ({ page }) => {
  await open(page, '?backend=cpu');
  // By path: Playwright hands the browser the file, which the worker streams into the module.
  await page.setInputFiles('#upload', ['config.json', 'model.safetensors', 'tokenizer.json'].map((n) => `${DIR}-small/${n}`));
  const status = page.locator('#ckpt-status');
  await expect(status).toContainText('Loaded the GPT-2 model at step 0.', { timeout: 2 * 60_000 });
  await expect(status).toContainText('it trains LoRA adapters (q, v; rank 8) at batch size 1 instead');
  await expect(page.locator('#params')).toHaveText('124.735M parameters');
  expect((await generate(page, 1, 8)).length).toBeGreaterThan(0);
});
