// The PIO handler of the exits-2vcpu guest, for VcpuWorker: it runs on the vCPU's worker thread and
// does the C loop's work (read port and data). HLT has no handler here: it goes to the owner.
export default function createHandlers() {
  let sink = 0;
  return {
    io(e) {
      sink += e.port + e.value;
      return sink < 0;
    },
  };
}
