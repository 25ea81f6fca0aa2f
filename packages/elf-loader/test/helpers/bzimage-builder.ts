// A minimal but protocol-faithful bzImage: setup sectors with a 2.15 setup header, then a
// protected-mode "kernel" of arbitrary bytes.
export interface BzSpec {
  kernel: Uint8Array;
  setupSects?: number;
  version?: number;
  relocatable?: boolean;
  xloadflags?: number;
  prefAddress?: bigint;
  initSize?: number;
  cmdlineSize?: number;
  initrdAddrMax?: number;
  kernelAlignment?: number;
  minAlignment?: number;
}

export function buildBzImage(s: BzSpec): Buffer {
  const sects = s.setupSects ?? 4;
  const setup = Buffer.alloc((sects + 1) * 512);
  setup.writeUInt8(sects, 0x1f1);
  setup.writeUInt32LE(Math.ceil(s.kernel.length / 16), 0x1f4);
  setup.writeUInt16LE(0xaa55, 0x1fe);
  setup.writeUInt8(0xeb, 0x200);
  setup.writeUInt8(0x6a, 0x201); // header ends at 0x26c
  setup.write("HdrS", 0x202, "latin1");
  setup.writeUInt16LE(s.version ?? 0x20f, 0x206);
  setup.writeUInt8(0x01, 0x211); // LOADED_HIGH
  setup.writeUInt32LE(0x100000, 0x214);
  setup.writeUInt32LE(s.initrdAddrMax ?? 0x7fffffff, 0x22c);
  setup.writeUInt32LE(s.kernelAlignment ?? 0x200000, 0x230);
  setup.writeUInt8(s.relocatable === false ? 0 : 1, 0x234);
  setup.writeUInt8(s.minAlignment ?? 21, 0x235);
  setup.writeUInt16LE(s.xloadflags ?? 0x3, 0x236);
  setup.writeUInt32LE(s.cmdlineSize ?? 2047, 0x238);
  setup.writeUInt32LE(0x100, 0x248);
  setup.writeUInt32LE(Math.max(0, s.kernel.length - 0x100), 0x24c);
  setup.writeBigUInt64LE(s.prefAddress ?? 0x1000000n, 0x258);
  setup.writeUInt32LE(s.initSize ?? 0x100000, 0x260);
  return Buffer.concat([setup, s.kernel]);
}
