"""The Llama-3-style SFT recipe the estimator tests vary (both tiers; imports nothing heavy)."""

LLAMA3_8B = "meta-llama/Meta-Llama-3-8B"


def recipe(model, **kw) -> dict:
    base = dict(model_name_or_path=str(model), stage="sft", do_train=True, finetuning_type="lora", lora_target="all",
                dataset="alpaca_sample", dataset_dir="data", template="llama3", cutoff_len=128,
                output_dir="/tmp/lfx_est_out", per_device_train_batch_size=2, report_to="none")
    base.update(kw)
    return base
