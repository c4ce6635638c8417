//! Handler tests
