//! Chunk execution and safety envelope for arm and drone back-ends (grown by the drivers issue).
