//! XDP program loader and Maglev map management.
