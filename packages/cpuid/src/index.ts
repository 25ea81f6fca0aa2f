export * from "./builders.js";
export * from "./errors.js";
export * from "./features/index.js";
export * from "./kvm.js";
export * from "./table.js";
export * from "./template.js";
export * from "./topology.js";
export * from "./xsave.js";
