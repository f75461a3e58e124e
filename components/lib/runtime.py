"""What every task's container can count on, on a cluster and in `docker run`."""

IMAGE_USER_ID = 10001  # the non-root user and group of images/*.Dockerfile
# The keys of the S3 Secret (the pipeline parameter s3_secret_name), each given to a container as
# the environment variable of the same name; the endpoint and region are plain variables.
S3_SECRET_NAME = "textclf-s3"  # noqa: S105 (the default name of that Secret, not a secret)
S3_CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Temporary credentials (STS) add a session token: taken from the same Secret when it holds one.
S3_OPTIONAL_CREDENTIAL_KEYS = ("AWS_SESSION_TOKEN",)
S3_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_REGION")
# A private or gated base model or dataset on the Hugging Face Hub: huggingface_hub reads its token from this variable,
# which the tasks that read the Hub take from the Secret kubeflow.hub_token_secret_name (its key of the same name).
HUB_TOKEN_VARIABLE = "HF_TOKEN"  # noqa: S105 (a variable's name, not a token)
