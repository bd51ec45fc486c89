//! Helpers shared by the end-to-end tests: finding the built `pmap`,
//! starting and stopping workload processes.
