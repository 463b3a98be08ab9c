//! Network namespace test harness.
