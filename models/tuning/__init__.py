"""How fast the engine runs, and in which precision: everything measured about it on the machine at hand.

- `precision`, `frozen`: bfloat16 copies of a stage and frozen graphs of them, per batch size;
- `choice`: timing those for the engine's UNet and decoder, or adopting an earlier choice;
- `store`: that choice kept between server starts on the same machine and model;
- `speed`: frames per second on throwaway streams, through the server's `models.runner.TwoStageRunner`;
- `capacity`: frames per second by batch size and steps, calibrated at start-up for admission.
"""
