import type { Device } from "./bus.js";
import { type Stateful, stateCheck } from "./stateful.js";

export interface PostCodeState {
  [key: string]: number | null;
  lastCode: number | null;
}

export const POST_PORT = 0x80;

/**
 * The POST diagnostic port. Firmware writes progress codes and Linux writes it as an I/O delay;
 * writes are kept (`lastCode`), reads return 0xff as on a PC without a POST card.
 */
export class PostCodePort implements Device, Stateful<PostCodeState> {
  readonly name: string;
  lastCode: number | null = null;
  constructor(name = "post") {
    this.name = name;
  }
  saveState(): PostCodeState {
    return { lastCode: this.lastCode };
  }
  restoreState(state: PostCodeState): void {
    this.lastCode = stateCheck.intOrNull(this.name, stateCheck.object(this.name, state), "lastCode", 0, 0xff);
  }
  read(_offset: number, data: Buffer): void {
    data.fill(0xff);
  }
  write(_offset: number, data: Buffer): void {
    this.lastCode = data[0]!;
  }
}
