import type { GuestMemory } from "@tsvmm/abi";
import { kvmAvailable } from "@tsvmm/kvm-backend";
import type { VmmBuilder } from "@tsvmm/vmm";
import { beforeAll, describe, expect, it } from "vitest";
import { buildGuests, type GuestCase, type RunResult, runGuest } from "../harness/guest.js";

// Guests that drive tsvmm's virtio devices from inside, with the test-kernels virtio-mmio driver
// (lib/virtio.c): each device is attached through VmmBuilder exactly as users attach it.

const PARAMS = 0x6000;
const PARAMS_MAGIC = 0x736d7261706f6976n; // "vioparms", lib/virtio.h
const VERSION_1 = 1n << 32n;
const RING_PACKED = 1n << 34n;

function writeParams(memory: GuestMemory, args: readonly bigint[]): void {
  memory.writeU64(PARAMS, PARAMS_MAGIC);
  args.forEach((a, i) => memory.writeU64(PARAMS + 8 + 8 * i, BigInt.asUintN(64, a)));
}

interface VirtioRun {
  readonly r: RunResult;
  readonly errors: unknown[];
}

async function runVirtio(name: string, attach: (b: VmmBuilder) => void, extra: Partial<GuestCase> & { args?: readonly bigint[] } = {}): Promise<VirtioRun> {
  const errors: unknown[] = [];
  const { args, ...rest } = extra;
  const r = await runGuest({
    name,
    irqchip: true,
    timeoutMs: 10_000,
    prepare: ({ memory }) => {
      if (args !== undefined) writeParams(memory, args);
      return undefined;
    },
    configure: (b) => {
      attach(b);
      b.onDeviceError((e) => errors.push(e));
    },
    ...rest,
  });
  return { r, errors };
}

function expectCleanExit(r: RunResult, code = 0): void {
  expect(r.end, `console: ${r.console} values: ${JSON.stringify(r.values.map((v) => [v.name, v.value.toString(16)]))}`).toEqual({ kind: "exit" });
  expect(r.exitCode).toBe(code);
}

function values(r: RunResult, name: string): bigint[] {
  return r.values.filter((v) => v.name === name).map((v) => v.value);
}

beforeAll(() => {
  buildGuests();
  expect(kvmAvailable(), "/dev/kvm must be readable and writable to run the virtio guests").toBe(true);
});

describe("virtio devices driven by guests on /dev/kvm", () => {
  it("virtio-rng: 32 bytes from the host CSPRNG on a split and a packed ring; runs differ", async () => {
    const words: bigint[][] = [];
    for (const packed of [false, true]) {
      const { r, errors } = await runVirtio("virtio-rng", (b) => b.rng(), { args: [packed ? 1n : 0n] });
      expectCleanExit(r);
      expect(errors).toEqual([]);
      expect(r.value("rng.device-id")).toBe(4n);
      expect(r.value("rng.features")).toBe(VERSION_1 | (packed ? RING_PACKED : 0n));
      expect(r.value("rng.status")).toBe(0xfn);
      expect(r.value("rng.token-match")).toBe(1n);
      expect(r.value("rng.len")).toBe(32n);
      const w = values(r, "rng.word");
      expect(w).toHaveLength(4);
      words.push(w);
    }
    // 256 random bits twice: equal only if the device did not fill the buffer from the CSPRNG.
    expect(words[0]).not.toEqual(words[1]);
    expect(words[0]!.some((w) => w !== 0n)).toBe(true);
  });
});
