import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { EventFd, GuestRam, requireKvm } from "@tsvmm/kvm-backend";
import { VmmBuilder } from "@tsvmm/vmm";
import { beforeAll, describe, expect, it } from "vitest";

const hasKvm = requireKvm();
const root = join(__dirname, "..", "..", "..");
const guest = (name: string) => join(root, "test-kernels", "out", `${name}.elf`);

beforeAll(() => {
  execFileSync("flock", ["/tmp/tsvmm-test-kernels.lock", "make", "-s", "-C", join(root, "test-kernels")]);
});

describe.runIf(hasKvm)("several VMs in one process", () => {
  it("a message goes from one guest to the other through shared memory and an ioeventfd -> irqfd doorbell", async () => {
    const shared = new GuestRam(0x1000);
    const bell = new EventFd();
    try {
      let outB = "";
      let readyReported = false;
      const doorbells: bigint[] = [];
      const receiver = new VmmBuilder()
        .kernelFile(guest("shm-recv"))
        .memoryMiB(8)
        .sharedMemory(0x800000, shared)
        .irqfd(bell, 5)
        .console((b) => {
          outB += b.toString();
        })
        .onValue((name, value) => {
          if (name === "shm.ready") readyReported = true;
          if (name === "shm.doorbells") doorbells.push(value);
        })
        .watchdog({ timeoutMs: 30_000 })
        .build();

      let outA = "";
      const sender = new VmmBuilder()
        .kernelFile(guest("shm-send"))
        .memoryMiB(8)
        .sharedMemory(0x800000, shared)
        .ioeventfd(0x700, bell)
        .console((b) => {
          outA += b.toString();
        })
        .watchdog({ timeoutMs: 30_000 })
        .build();
      const senderPorts = new Set<number>();
      sender.pio.observer = (port) => senderPorts.add(Number(port));
      // The sender starts first: it waits in shared memory for the receiver to route its doorbell
      // pin (an edge before that would be lost), so the VMs may start in any order.
      const aRun = sender.run();
      const [ra, rb] = await Promise.all([aRun, receiver.run()]);
      expect(readyReported).toBe(true);
      expect(ra).toMatchObject({ reason: "guest-exit", exitCode: 0 });
      expect(rb).toMatchObject({ reason: "guest-exit", exitCode: 0 });
      const sent = /sent: (greetings from VM A #[0-9a-f]{16})/.exec(outA)?.[1];
      expect(sent).toBeDefined();
      expect(outB).toContain(`received: ${sent}`);
      expect(doorbells).toEqual([1n]);
      // The doorbell OUT never reached the sender's VMM: KVM signalled the eventfd itself, and
      // the receiver's irqfd consumed it.
      expect(senderPorts.has(0x80)).toBe(true); // the observer does see the POST code written after the doorbell
      expect(senderPorts.has(0x700)).toBe(false);
      // Both VMs are gone: the shared region was cleared as the last one released it.
      expect(shared.inUse).toBe(0);
      expect(shared.buffer.every((x) => x === 0)).toBe(true);
      expect(bell.read()).toBeUndefined();
    } finally {
      shared.close();
      bell.close();
    }
  });
});
