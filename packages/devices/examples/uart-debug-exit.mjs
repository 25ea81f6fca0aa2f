import { PioBus, Uart16550, DebugExit, DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, TraceRecorder, replay } from "@tsvmm/devices";

const bus = new PioBus();
const uart = new Uart16550({ name: "com1", output: process.stdout, irq: (level) => { /* wire to IRQ 4 */ } });
const exit = new DebugExit({ onExit: (code) => console.error(`guest exited with ${code}`) });
bus.register(0x3f8, 8, uart);
bus.register(DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, exit);

const trace = TraceRecorder.open("trace.jsonl");
trace.observe(bus);
// What a vCPU's KVM_EXIT_IO would do: OUT 0x3f8 'h', 'i', '\n'; then OUT 0xf4 (4 bytes) = 0.
for (const c of "hi\n") bus.writeValue(0x3f8, 1, c.charCodeAt(0));
bus.writeValue(DEBUG_EXIT_PORT, 4, 0);
await trace.close();

const fresh = new PioBus();
fresh.register(0x3f8, 8, new Uart16550({ name: "com1" }));
fresh.register(DEBUG_EXIT_PORT, DEBUG_EXIT_SIZE, new DebugExit());
const r = replay("trace.jsonl", { pio: fresh });
console.log(JSON.stringify(r.output.get("com1").toString()), r.exits, r.divergences);
