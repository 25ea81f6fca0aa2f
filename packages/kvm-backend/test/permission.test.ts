import { permissionAdvice } from "@tsvmm/kvm-backend";
import { describe, expect, it } from "vitest";

// EACCES on /dev/kvm: the advice must fit the device as it is (root can open anything here, so
// the device is described through an injected lookup).
describe("permissionAdvice", () => {
  const look = (mode: number, gid: number, groups: Record<number, string>) => ({
    stat: () => ({ uid: 0, gid, mode: 0o20000 | mode }),
    groupName: (g: number) => groups[g],
  });

  it("a root:root 0600 device with no kvm group: says so, and does not tell the user to join a group that cannot help", () => {
    const a = permissionAdvice("/dev/kvm", look(0o600, 0, { 0: "root" }));
    expect(a).toMatch(/owned by uid 0, group root, mode 0600/);
    expect(a).toMatch(/the group has no read-write access/);
    expect(a).not.toMatch(/add this user to group kvm/);
  });

  it("a root:kvm 0660 device: join the kvm group", () => {
    expect(permissionAdvice("/dev/kvm", look(0o660, 104, { 104: "kvm" }))).toMatch(/add this user to group kvm \(then log in again\)/);
  });

  it("a group id with no name here: says which and how to fix the device", () => {
    expect(permissionAdvice("/dev/kvm", look(0o660, 4242, {}))).toMatch(/gid 4242 \(no such group here\).*chmod 0660/);
  });

  it("the real device on this machine is described without throwing", () => {
    expect(permissionAdvice("/dev/kvm")).toMatch(/owned by uid \d+, group .*, mode 0\d{3}/);
    expect(permissionAdvice("/nonexistent/kvm")).toMatch(/cannot be examined/);
  });
});
