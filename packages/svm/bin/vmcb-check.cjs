#!/usr/bin/env node
"use strict";
process.exitCode = require("../dist/cli.cjs").main(process.argv.slice(2));
