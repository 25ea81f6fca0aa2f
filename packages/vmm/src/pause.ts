/**
 * Where the vCPU loops of one VM wait while it is paused. A pause is complete when every loop
 * still running has parked; a loop parks only right after an `interrupted` exit, that is after a
 * KVM_RUN that returned at once because of `immediate_exit`. KVM finishes any I/O or MMIO the
 * previous exit left half done inside that KVM_RUN (api.rst, "immediate_exit"), so a parked vCPU's
 * state as read by KVM_GET_* is complete and can be saved.
 */
export class PauseGate {
  private wanted = false;
  private readonly active = new Set<number>();
  private readonly parked = new Set<number>();
  private release: (() => void) | undefined;
  private released: Promise<void> | undefined;
  private waiters: Array<() => void> = [];

  /** True from `request()` until `resume()`: loops must park at their next interrupted exit. */
  get requested(): boolean {
    return this.wanted;
  }

  /** True when a pause was asked for and every active loop has parked. */
  get complete(): boolean {
    return this.wanted && this.parked.size === this.active.size;
  }

  /** A loop starts (run()). */
  enter(index: number): void {
    this.active.add(index);
  }

  /** A loop ended for good: a pause no longer waits for it. */
  leave(index: number): void {
    this.active.delete(index);
    this.parked.delete(index);
    this.settle();
  }

  /** Ask every loop to park; resolves once all of them have. `kick` makes each leave KVM_RUN. */
  request(kick: () => void): Promise<void> {
    if (!this.wanted) {
      this.wanted = true;
      this.released = new Promise<void>((r) => {
        this.release = r;
      });
    }
    const done = new Promise<void>((r) => this.waiters.push(r));
    this.settle();
    kick();
    return done;
  }

  /** Called by loop `index` after it left the run loop for the pause; resolves on resume. */
  async park(index: number): Promise<void> {
    if (!this.wanted || this.released === undefined) return;
    this.parked.add(index);
    this.settle();
    await this.released;
  }

  /** Let every parked loop go on. Safe when nothing is paused. */
  resume(): void {
    if (!this.wanted) return;
    this.wanted = false;
    this.parked.clear();
    const r = this.release;
    this.release = undefined;
    this.released = undefined;
    r?.();
    // A pause still being waited for when resumed resolves too: nobody waits for ever.
    for (const w of this.waiters.splice(0)) w();
  }

  private settle(): void {
    if (!this.complete) return;
    for (const w of this.waiters.splice(0)) w();
  }
}
