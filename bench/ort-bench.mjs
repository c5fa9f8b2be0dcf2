// ONNX Runtime peer for bench/vs-ort.sh: the same D0 graph, median forward time of
// RUNS runs after WARMUP, at the given intra-op thread count. Prints one JSON line.
import ort from 'onnxruntime-node';
import { readFileSync } from 'node:fs';

const [model, threads = '1', runs = '30', warmup = '3'] = process.argv.slice(2);
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: Number(threads),
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});
const inputName = session.inputNames[0];
const dims = [1, 3, 512, 512];
const data = new Float32Array(dims.reduce((a, b) => a * b));
let s = 12345;
for (let i = 0; i < data.length; i++) {
  s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  data[i] = ((s >>> 8) / 16777216) * 4 - 2;
}
const feeds = { [inputName]: new ort.Tensor('float32', data, dims) };
for (let i = 0; i < Number(warmup); i++) await session.run(feeds);
const times = [];
for (let i = 0; i < Number(runs); i++) {
  const t0 = process.hrtime.bigint();
  await session.run(feeds);
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
times.sort((a, b) => a - b);
const n = times.length;
const median = n % 2 ? times[(n - 1) / 2] : (times[n / 2 - 1] + times[n / 2]) / 2;
console.log(JSON.stringify({ runtime: 'onnxruntime-node ' + ort.env.versions?.common, threads: Number(threads), runs: n, median_ms: median, min_ms: times[0] }));
