export * from "./checker-cli.js";
export * from "./input-file.js";
