export * from "./cli/index.js";
export * from "./errors.js";
export * from "./guest-memory.js";
export * from "./hypercall.js";
export * from "./kvm/index.js";
export * from "./layout.js";
export * from "./vmx/eptp.js";
export * from "./x86/index.js";
