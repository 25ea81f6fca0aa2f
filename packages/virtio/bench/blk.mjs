// The virtio benchmarks live in bench/virtio/index.mjs (`node bench/run.mjs virtio` at the root
// runs them and merges the figures into bench/results.json); this prints the same rows as JSON
// lines without touching results.json. Build first (`npx tsup`): the bench imports the dist.
import bench from "../../../bench/virtio/index.mjs";

for (const row of await bench()) console.log(JSON.stringify(row));
