// file_layouts: append + fdatasync into a fallocated, a zero-filled and a growing file, taking turns (see README.md).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){ int rounds=atoi(argv[1]); const char*names[3]={"posix_fallocate","zero-filled (okaywal)","appending (File)"}; int fd[3]; off_t off[3]={0,0,0}; char rec[130]; memset(rec,'x',130);
 size_t pre=64<<20; char*z=calloc(1,1<<20);
 for(int f=0;f<3;f++){char p[256];snprintf(p,256,"%s/z%d",argv[2],f);unlink(p);fd[f]=open(p,O_RDWR|O_CREAT|O_TRUNC,0644);
   if(f==0){posix_fallocate(fd[f],0,pre);fdatasync(fd[f]);} if(f==1){ftruncate(fd[f],pre);for(size_t o=0;o<pre;o+=1<<20)pwrite(fd[f],z,1<<20,o);fdatasync(fd[f]);} }
 static double t[3][100000]; int cnt[3]={0}; int per=100;
 for(int r=0;r<rounds;r++) for(int m=0;m<3;m++) for(int i=0;i<per;i++){ double a=now(); pwrite(fd[m],rec,130,off[m]); off[m]+=130; fdatasync(fd[m]); t[m][cnt[m]++]=now()-a; }
 for(int m=0;m<3;m++){ double s=0; for(int i=0;i<cnt[m];i++) s+=t[m][i]; qsort(t[m],cnt[m],sizeof(double),cmp); printf("%-24s append+fdatasync mean %.0f med %.0f p25 %.0f p75 %.0f us\n",names[m],s/cnt[m],t[m][cnt[m]/2],t[m][cnt[m]/4],t[m][3*cnt[m]/4]); }
 return 0;}
