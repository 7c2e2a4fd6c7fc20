// Finetuning beyond plain text in the page: instruction tuning with its chat panel, a classifier
// with its report and predictions, and LoRA with its exports.
import { readFileSync } from 'node:fs';
import { expect, file, generate, kiln, open, safetensorsHeader, test, train } from './helpers.js';

/** Prompts "Q0:" … "Q3:" answered "A0" … "A3". */
const pairs = () => [...Array(40).keys()]
  .map((i) => JSON.stringify({ prompt: `Q${i % 4}:`, completion: `A${i % 4}` }))
  .join('\n');

/** Texts of a's labelled "a", of b's labelled "b". */
function labels() {
  const rows = ['text,label'];
  for (let i = 0; i < 60; i++) {
    const [word, label] = i % 2 ? ['bbba', 'b'] : ['aaab', 'a'];
    rows.push(`${word.repeat(1 + (i % 3))},${label}`);
  }
  return rows.join('\n');
}

test('a .jsonl of prompts and completions trains a chat model that answers and stops', async ({ page }) => {
  await open(page, '?backend=cpu');
  await page.setInputFiles('#file', file('pairs.jsonl', pairs()));
  await expect(page.locator('#corpus-stats')).toContainText('training on 36, validating on 4 prompt/completion pairs');
  await train(page, 150, 75);
  expect(await kiln(page, 'history')).toHaveLength(150);
  await expect(page.locator('#chat')).toBeVisible();
  await page.fill('#temperature', '0');
  for (const q of ['Q1:', 'Q3:']) {
    await page.fill('#chat-input', q);
    await page.click('#chat-send');
    await expect(page.locator('#chat-send')).toBeEnabled();
    // The answer, without the blank line that ends every training completion.
    expect(await kiln(page, 'lastAnswer')).toBe(`A${q[1]}`);
  }
  await expect(page.locator('#chat-log .model')).toHaveText(['A1', 'A3']);
  // A bad line is named, and the chat model stays.
  await page.setInputFiles('#file', file('bad.jsonl', '{"prompt": "Q0:", "completion": "A0"}\n{oops\n'));
  await expect(page.locator('#data-error')).toContainText('bad.jsonl, line 2');
});

test('a .csv of labelled texts trains a classifier on WebGPU: report, confusion matrix, predictions', async ({ page }) => {
  await open(page);
  await page.selectOption('#pooling', 'mean');
  await page.setInputFiles('#file', file('labels.csv', labels()));
  await expect(page.locator('#corpus-stats')).toContainText('labelled texts (classes: a, b)');
  await train(page, 40, 20);
  await expect(page.locator('#classifier')).toBeVisible();
  await expect(page.locator('#generation')).toBeHidden();
  const report = await kiln(page, 'report');
  expect(report.classes).toEqual(['a', 'b']);
  expect(report.accuracy).toBeGreaterThanOrEqual(0.9);
  expect(report.confusion.flat().reduce((a, b) => a + b, 0)).toBe(report.examples);
  await expect(page.locator('#class-metrics')).toContainText('accuracy');
  await expect(page.locator('#confusion tr')).toHaveCount(3);
  expect(await kiln(page, 'task')).toEqual({ kind: 'classify', classes: ['a', 'b'], pooling: 'mean' });
  await page.fill('#predict-text', 'bbbabbba');
  await page.click('#predict');
  await expect(page.locator('#prediction li').first()).toContainText('b:');
  expect((await kiln(page, 'prediction'))[0][1]).toBeGreaterThan(0.5);
});

test('LoRA finetunes a trained model; its adapters and its merged model download', async ({ page }) => {
  await open(page, '?backend=cpu');
  await train(page, 4);
  const before = await generate(page, 2, 30);
  await page.check('#finetune');
  await page.check('#lora');
  await page.fill('#lora-targets', 'q,v,mlp');
  await page.setInputFiles('#file', file('more.txt', 'To be, or not to be, that is the question.\n'.repeat(80)));
  await expect(page.locator('#corpus-stats')).toContainText('finetuning the current model');
  await train(page, 6);
  expect(await generate(page, 2, 30)).not.toBe(before);
  const files = [];
  page.on('download', (d) => files.push(d));
  await page.click('#download-adapters');
  await expect.poll(() => files.length).toBe(2);
  const named = async (name) => readFileSync(await files.find((d) => d.suggestedFilename() === name).path());
  // PEFT's files: the factors, and its LoraConfig.
  const header = safetensorsHeader(await named('adapter_model.safetensors'));
  // 2 blocks × (c_attn's q and v as one rank-8 adapter, c_fc, mlp.c_proj) × (lora_A, lora_B)
  expect(Object.keys(header).filter((k) => /\.lora_[AB]\.weight$/.test(k))).toHaveLength(2 * 3 * 2);
  expect(header['base_model.model.transformer.h.0.attn.c_attn.lora_A.weight'].shape).toEqual([8, 32]);
  const peft = JSON.parse((await named('adapter_config.json')).toString());
  expect(peft).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 16, fan_in_fan_out: true,
    target_modules: ['attn.c_attn', 'mlp.c_fc', 'mlp.c_proj'], rank_pattern: { 'attn.c_attn': 8 } });
  await page.click('#download-transformers');
  await expect.poll(() => files.length).toBe(6);
  expect(files.slice(2).map((d) => d.suggestedFilename()).sort())
    .toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const config = files.find((d) => d.suggestedFilename() === 'config.json');
  expect(JSON.parse(readFileSync(await config.path()).toString()).model_type).toBe('gpt2');
});
