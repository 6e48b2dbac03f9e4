/*
 * Declarations of the AssemblyScript builtins that core/env.ts uses, so that `tsc` can type-check all of
 * core/ in portable mode. Only env.ts may use them; everything else goes through env.
 */
declare function load<T>(ptr: usize, immOffset?: usize): T;
declare function clz<T>(value: T): T;
declare function store<T>(ptr: usize, value: T, immOffset?: usize): void;
declare const __heap_base: usize;
declare namespace memory {
  function size(): i32;
  function grow(pages: i32): i32;
  function copy(dst: usize, src: usize, n: usize): void;
  function fill(dst: usize, value: u8, n: usize): void;
}
declare type u64 = number;
