export * from "./chain.js";
export * from "./queue.js";
export { fence } from "./ring-memory.js";
export { MAX_INDIRECT_DESCRIPTORS } from "./split.js";
