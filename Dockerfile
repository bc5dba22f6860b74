# CPU image by default; for GPUs build FROM an nvidia/cuda or pytorch/pytorch base and skip the CPU wheel line.
FROM python:3.11-slim
WORKDIR /opt/xtra
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY xtra ./xtra
RUN pip install --no-cache-dir ".[minatar,sweep,report]"
ENTRYPOINT ["xtra"]
CMD ["--help"]
