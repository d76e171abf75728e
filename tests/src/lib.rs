//! Helpers shared by nook's whole-program tests.
