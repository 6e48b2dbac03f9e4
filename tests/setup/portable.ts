// Installs AssemblyScript's portable globals (u8(), u32(), i32(), …) that core/ uses when it runs as
// JavaScript. The JS build bundles the same import.
import "assemblyscript/std/portable/index.js";
