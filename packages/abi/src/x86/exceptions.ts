/**
 * Exception vectors both vendors assign alike (SDM Vol. 3A Table 6-1, APM Vol. 2 Table 8-1).
 * Vector 19 is #XM in the SDM and #XF in the APM; 20 (#VE) is Intel's, 28–30 (#HV, #VC, #SX)
 * AMD's, and those stay in the vendor packages.
 */
export const EXCEPTION_VECTOR = {
  DE: 0,
  DB: 1,
  NMI: 2,
  BP: 3,
  OF: 4,
  BR: 5,
  UD: 6,
  NM: 7,
  DF: 8,
  TS: 10,
  NP: 11,
  SS: 12,
  GP: 13,
  PF: 14,
  MF: 16,
  AC: 17,
  MC: 18,
  XM: 19,
  CP: 21,
} as const;
