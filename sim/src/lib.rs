//! Simulation environments, scripted experts, recording and replay (grown by the sim issue).
