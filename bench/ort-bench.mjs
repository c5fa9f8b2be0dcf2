// ONNX Runtime peer for bench/vs-ort.sh: the same D0 graph on the same input tensor
// (an NCHW float32 file, the one effdet-bench --input reads), median forward time of
// RUNS runs after WARMUP, at the given intra-op thread count. Prints one JSON line.
//
//   node bench/ort-bench.mjs MODEL.onnx INPUT.f32 [THREADS] [RUNS] [WARMUP]
import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';

const [model, input, threads = '1', runs = '30', warmup = '3'] = process.argv.slice(2);
if (!model || !input) {
  console.error('usage: node bench/ort-bench.mjs MODEL.onnx INPUT.f32 [THREADS] [RUNS] [WARMUP]');
  process.exit(2);
}
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: Number(threads),
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});
const inputName = session.inputNames[0];
const dims = [1, 3, 512, 512];
const bytes = readFileSync(input);
const count = dims.reduce((a, b) => a * b);
if (bytes.length !== count * 4) {
  console.error(`ort-bench: ${input}: ${bytes.length} bytes, expected ${count * 4} (1x3x512x512 float32)`);
  process.exit(1);
}
// Copy into an aligned Float32Array (little-endian, as the file is).
const data = new Float32Array(count);
new Uint8Array(data.buffer).set(bytes);
const feeds = { [inputName]: new ort.Tensor('float32', data, dims) };
for (let i = 0; i < Number(warmup); i++) await session.run(feeds);
// Wall time, and the process's CPU time (every thread; user + system) per run: on a
// loaded machine the time spent waiting for a core is in the first only.
const times = [];
const cpu = [];
for (let i = 0; i < Number(runs); i++) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await session.run(feeds);
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  const c = process.cpuUsage(c0);
  cpu.push((c.user + c.system) / 1e3);
}
const med = (v) => {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
console.log(JSON.stringify({ runtime: 'onnxruntime-node ' + ort.env.versions?.common, input, threads: Number(threads), runs: times.length, median_ms: med(times), min_ms: Math.min(...times), cpu_median_ms: med(cpu) }));
