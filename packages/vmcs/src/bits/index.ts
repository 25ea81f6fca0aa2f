export * from "./controls.js";
export * from "./events.js";
export * from "./exits.js";
export * from "./registers.js";
export * from "./segments.js";
