"""Stage 5 of the flow: publish to the Hugging Face Hub.

- `cards`: model card rendered from the run's real numbers (`hub_cards/model_card.md`);
- `plots`: the training-curve PNG uploaded beside the card;
- `push`: adapter (or merged weights) + processor + card + plot in one commit (`tpo-hf push`);
- `space`: a Gradio Space folder written from `hub_cards/` and pushed (`tpo-hf space`); `app`: the demo itself.
"""
