//! A simulated SPA/MPP phone line.
