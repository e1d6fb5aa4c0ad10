// `plaza codegen ts` emits types that make a sample app compile (and refuse wrong code).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { CLIENT_DIR, MANIFEST, PLAZA_BIN } from "./helpers.mjs";

const run = promisify(execFile);

describe("plaza codegen ts", () => {
  const dir = mkdtempSync(join(tmpdir(), "plaza-codegen-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("emits row, insert and patch types per entity and the Entities map", async () => {
    const { stdout } = await run(PLAZA_BIN, ["codegen", "ts", "--manifest", MANIFEST]);
    assert.match(stdout, /export interface Todo \{/);
    assert.match(stdout, /\n  id: string;\n/);
    assert.match(stdout, /\n  createdAt: string;\n  updatedAt: string;\n/);
    assert.match(stdout, /\n  done: 0 \| 1;\n/);
    assert.match(stdout, /\n  priority: number \| null;\n/);
    assert.match(stdout, /\n  priority\?: number \| null;\n/);
    assert.match(stdout, /Todo: \{ row: Todo; insert: TodoInsert; patch: TodoPatch \};/);
    writeFileSync(join(dir, "plaza-types.ts"), stdout);
  });

  it("types a sample app end to end (tsc --noEmit)", async () => {
    copyFileSync(join(CLIENT_DIR, "test", "fixtures", "typed-app.ts"), join(dir, "app.ts"));
    // The app imports the package by name, as an app that installed it would.
    mkdirSync(join(dir, "node_modules", "@plaza"), { recursive: true });
    symlinkSync(CLIENT_DIR, join(dir, "node_modules", "@plaza", "client"), "dir");
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, lib: ["ES2022", "DOM"], types: [] },
        files: ["app.ts", "plaza-types.ts"],
      }),
    );
    const tsc = join(CLIENT_DIR, "node_modules", "typescript", "bin", "tsc");
    const result = await run(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")]).catch((e) => e);
    assert.equal(result.code ?? 0, 0, `tsc failed:\n${result.stdout}${result.stderr}`);
  });

  it("refuses a missing manifest", async () => {
    const result = await run(PLAZA_BIN, ["codegen", "ts", "--manifest", join(dir, "missing.json")]).catch((e) => e);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no manifest/);
  });
});
