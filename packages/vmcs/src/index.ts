export * from "./bits/index.js";
export * from "./bridge.js";
export * from "./caps.js";
export * from "./checks/index.js";
export { checkEptp, type EptpViolation } from "./eptp.js";
export * from "./errors.js";
export * from "./fields.js";
export * from "./state.js";
export * from "./templates.js";
