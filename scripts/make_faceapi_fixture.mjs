// Reference outputs of face-api's recognition, 68-landmark and age/gender nets (Node 20).
//
// Usage: node scripts/make_faceapi_fixture.mjs NODE_PREFIX MODEL_DIR IN.json OUT.json
//   NODE_PREFIX: a folder whose node_modules holds @tensorflow/tfjs@4.22.0,
//     @tensorflow/tfjs-backend-wasm@4.22.0 and @vladmandic/face-api@1.7.15 (pure JS; no
//     native binaries). MODEL_DIR: face-api's model/ folder.
//   IN.json: {"images": [{"name", "shape": [H, W, 3], "data": [uint8 ...]}],
//             "resize": [{"name", "shape": [H, W, C], "data": [float ...], "size": [h, w]}]}
//   OUT.json: per image the descriptor [128], landmarks [136] (face-api's post-processed,
//     relative interleaved x, y), age and gender probabilities [2]; per resize case the
//     output of tf.image.resizeBilinear(x, size, alignCorners=false, halfPixelCenters=false).
// scripts/make_faceapi_fixture.py drives this script and writes tests/fixtures.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [prefix, modelDir, inFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node make_faceapi_fixture.mjs NODE_PREFIX MODEL_DIR IN.json OUT.json');
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(prefix), 'package.json'));
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { tf } = faceapi;

await tf.setBackend('cpu');
await tf.ready();
const nets = faceapi.nets;
await nets.faceRecognitionNet.loadFromDisk(modelDir);
await nets.faceLandmark68Net.loadFromDisk(modelDir);
await nets.ageGenderNet.loadFromDisk(modelDir);

const input = JSON.parse(fs.readFileSync(inFile, 'utf8'));
const out = {
  backend: tf.getBackend(),
  tfjs: tf.version.tfjs,
  faceapi: faceapi.version,
  images: [],
  resize: [],
};
for (const img of input.images) {
  const x = tf.tensor3d(Float32Array.from(img.data), img.shape, 'float32');
  const descriptor = await nets.faceRecognitionNet.computeFaceDescriptor(x);
  const landmarks = await nets.faceLandmark68Net.forward(x);
  const ag = await nets.ageGenderNet.forward(x);
  out.images.push({
    name: img.name,
    descriptor: Array.from(descriptor),
    landmarks: Array.from(landmarks.dataSync()),
    age: Array.from(ag.age.dataSync())[0],
    gender: Array.from(ag.gender.dataSync()),
  });
  tf.dispose([x, landmarks, ag.age, ag.gender]);
}
for (const r of input.resize || []) {
  const x = tf.tensor4d(Float32Array.from(r.data), [1, ...r.shape], 'float32');
  const y = tf.image.resizeBilinear(x, r.size, false, false);
  out.resize.push({ name: r.name, shape: y.shape.slice(1), data: Array.from(y.dataSync()) });
  tf.dispose([x, y]);
}
fs.writeFileSync(outFile, JSON.stringify(out));
console.log(`wrote ${outFile}: ${out.images.length} images, ${out.resize.length} resizes, backend ${out.backend}`);
