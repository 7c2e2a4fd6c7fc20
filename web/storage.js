// Checkpoints in the browser's origin-private file system (OPFS): one folder per name holding
// the same three files as a checkpoint on disk. Each file is written under a temporary name and
// then moved into place, so a save that dies half-way leaves the previous file whole.

const FILES = { meta: 'checkpoint.json', weights: 'model.safetensors', optimizer: 'optimizer.safetensors' };

async function root() {
  if (!navigator.storage?.getDirectory) {
    throw new Error('This browser has no origin-private file system; use Download instead.');
  }
  return (await navigator.storage.getDirectory()).getDirectoryHandle('checkpoints', { create: true });
}

async function writeFile(dir, name, bytes) {
  const tmp = await dir.getFileHandle(`${name}.tmp`, { create: true });
  const out = await tmp.createWritable();
  await out.write(bytes);
  await out.close();
  await tmp.move(dir, name);
}

/** Saves `{meta, weights, optimizer?}` under `name`; the metadata goes last, naming the step. */
export async function save(name, ckpt) {
  const dir = await (await root()).getDirectoryHandle(name, { create: true });
  await writeFile(dir, FILES.weights, ckpt.weights);
  if (ckpt.optimizer) await writeFile(dir, FILES.optimizer, ckpt.optimizer);
  await writeFile(dir, FILES.meta, new TextEncoder().encode(ckpt.meta));
}

/** The checkpoint saved under `name`, as bytes. */
export async function load(name) {
  const dir = await (await root()).getDirectoryHandle(name);
  const read = async (file) => new Uint8Array(await (await (await dir.getFileHandle(file)).getFile()).arrayBuffer());
  const optimizer = await read(FILES.optimizer).catch(() => null);
  return { meta: await read(FILES.meta), weights: await read(FILES.weights), optimizer };
}

/** Names of the saved checkpoints. */
export async function list() {
  const names = [];
  for await (const [name, handle] of (await root()).entries()) {
    if (handle.kind === 'directory') names.push(name);
  }
  return names.sort();
}
