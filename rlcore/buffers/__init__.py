"""Replay and rollout storage: buffers, sum trees and index samplers."""
