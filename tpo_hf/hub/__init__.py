"""Stage 6 of the flow: publish to the Hugging Face Hub. Everything that leaves the machine goes through here.

- `model_card`: the model card rendered from the run's real numbers (`hub_cards/model_card.md`);
- `plots`: the training-curve PNG uploaded beside the model card;
- `push`: one-commit pushes: adapter (or merged weights) + processor + card + plot (`tpo-hf push`), and a curated
  dataset + card (+ videos) (`tpo-hf curate --push_to_hub`);
- `training_publish`: what `TPOTrainer` publishes of a run (model card, repo, push), on the modules above;
- `space`: a Gradio Space folder written from `hub_cards/` and pushed (`tpo-hf space`); `app`: the demo itself;
The dataset card is curation's (`tpo_hf.curation.dataset_card`) and the templates' finder is `tpo_hf.templates`.
"""
