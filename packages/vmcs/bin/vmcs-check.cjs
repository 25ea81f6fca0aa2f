#!/usr/bin/env node
"use strict";
// `vmcs-check ... | head -1` closes the pipe early: stop quietly, as cat does.
process.stdout.on("error", (e) => {
  if (e && e.code === "EPIPE") process.exit(process.exitCode ?? 0);
  throw e;
});
process.exitCode = require("../dist/cli.cjs").main(process.argv.slice(2));
